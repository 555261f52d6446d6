"""Staff sign-in: who is calling the API, and with which role.

``StaffAuth`` is the API's ``Authenticator`` (hotline/http/api.py): it resolves a bearer token
to a :class:`~hotline.http.api.Principal` (the staff member and their configured role).
"""

from __future__ import annotations

from hotline.auth.staff import StaffAuth

__all__ = ["StaffAuth"]
