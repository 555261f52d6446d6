"""Staff sign-in: who is calling the API, and with which role; passwords kept as hashes.

``StaffAuth`` (staff.py) is the API's ``Authenticator`` (hotline/http/api.py): sessions for
browsers, bearer tokens for scripts, the metrics token, the password sign-in under the
brute-force lockout. ``StaffCredentials`` (credentials.py) reads the staff file that ``hotline
passwd`` writes (argon2id for the web, SIP digest HA1s). ``AuditTrail`` (audit.py) writes every
state-changing call, sign-in and lockout to the case store's ``audit_log``.
"""

from __future__ import annotations

from hotline.auth.audit import AuditTrail
from hotline.auth.credentials import StaffCredentials
from hotline.auth.staff import StaffAuth

__all__ = ["AuditTrail", "StaffAuth", "StaffCredentials"]
