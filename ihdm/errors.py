"""Errors meant for the user.

Every error whose message tells the user what to fix (a config key, an input file, a
setting) derives from :class:`UserError`; ``ihdm`` prints those as one line and exits
with status 2. Any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An input or setting the user can fix; the message names it and what is wrong."""
