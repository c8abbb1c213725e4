"""The instructor's side of the course: release notebooks, grade them safely, keep a gradebook.

    vit-course release [NOTEBOOK...] --out DIR     # release.py
    vit-course grade SUBMITTED --out DIR           # gradebook.py -> runner.py

Students' code never runs in the grader's process: `sandbox` starts `worker` in a
bubblewrap sandbox, `remote` stands in for the student's objects so that the notebook's
own checks (`vit_course.checks`) and the held-out cases (`heldout`) judge them here, and
only tensors and plain data cross (`wire`). Nothing here is imported by the notebooks.
"""
