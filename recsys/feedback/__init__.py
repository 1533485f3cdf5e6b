"""The feedback loop: ids for served lists, their background recording, attribution of events, feed cursors.

``ServedLog`` hands out and records list ids (the API's ``meta.recommendation_id``), ``feedback_report`` counts what
the lists led to, ``Cursor`` pages a feed without repeats.
"""

from recsys.feedback.cursor import Cursor, decode_cursor
from recsys.feedback.report import feedback_report, wilson
from recsys.feedback.served import Served, ServedLog, new_recommendation_id

__all__ = ["Cursor", "Served", "ServedLog", "decode_cursor", "feedback_report", "new_recommendation_id", "wilson"]
