"""The contact center: IVR -> ACD -> agent or voicemail, every step in the call's case record.

Split by responsibility:

* ``contact.py``: coordination of one call and the :class:`ContactCenter` facade;
* ``waiting.py``: the waiting experience (music, announcements, keys 1 and 2);
* ``offers.py``: ringing agents, bridging, delivering messages and callbacks;
* ``caselog.py``: the case event vocabulary (:class:`CaseLog`);
* ``recordings.py``: recorded conversations (consent prompt, stereo recording, retention);
* ``monitor.py``: supervisors listening, whispering or barging in on an agent's call;
* ``telephony.py``: the :class:`Telephony` port the center rings agents through.
"""

from hotline.center.caselog import CaseLog, CaseTrail
from hotline.center.contact import (
    CallOutcome,
    ContactCenter,
    NoConfigFile,
    read_settings,
)
from hotline.center.telephony import Telephony
from hotline.center.waiting import QueueItem

__all__ = [
    "CallOutcome",
    "CaseLog",
    "CaseTrail",
    "ContactCenter",
    "NoConfigFile",
    "QueueItem",
    "Telephony",
    "read_settings",
]
