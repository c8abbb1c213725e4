"""nbgrader settings for this course (used when nbgrader runs in a folder with this file).

Copy it into your nbgrader course folder (next to `source/`). See README, "For instructors".
Known and harmless: autograde warns "Attribute 'checksum' for cell check_... has changed"
for every student, because nbgrader's stored checksum includes the hidden tests that the
release removes (jupyter/nbgrader#1961). `vit-course grade` reports changed check cells
itself, from the released source.
"""

c = get_config()  # noqa: F821 - provided by nbgrader when it reads this file

# Notebook 08 trains two small models from scratch (about a minute on 2 cores): nbgrader's
# default of 30 s per cell fails even the solution
c.Execute.timeout = 300
# a cell that runs past it is interrupted, so one student's loop does not stop the class
c.Execute.interrupt_on_timeout = True
