"""The domain's values: what crosses layers, with no behaviour that needs I/O.

`core`: Severity, Sample, Evaluation, AlarmState, Transition, MuteReason.
`incident`, `modes`, `silence`, `message`, `decision`: the values the engine
decides, the store keeps and the notifiers send.
"""

from .core import (
    AlarmState,
    Evaluation,
    MuteReason,
    Sample,
    Severity,
    Transition,
    json_value,
    value_text,
)

__all__ = ["AlarmState", "Evaluation", "MuteReason", "Sample", "Severity", "Transition",
           "json_value", "value_text"]
