"""`as_learner(reference)`: the course's answer as a learner's own object.

The checks refuse the reference itself ("run your exercise cell first"), so tests that
show a correct answer passes hand them a copy: a wrapper function or a subclass.
"""

import functools


def as_learner(reference):
    if isinstance(reference, type):
        return type(f"My{reference.__name__}", (reference,), {})

    @functools.wraps(reference)
    def mine(*args, **kwargs):
        return reference(*args, **kwargs)

    return mine
