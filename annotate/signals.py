"""What annotate tells the rest of the app, without knowing who listens.

export_finished: an export succeeded or failed (sender: Export, export_id). Training's rounds
listen, so a round moves on the moment its snapshot is built, not at the next minute's tick.
"""

from django.dispatch import Signal

export_finished = Signal()
