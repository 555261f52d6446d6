"""Staff passwords, never in plain text: the staff credentials file and the checks against it.

The file (``[server] staff_file``, default ``<data_dir>/staff.toml``; written by ``hotline
passwd``, mode 0600) holds for each staff member:

* ``web``: an argon2id hash (argon2-cffi, RFC 9106), checked at the API's sign-in;
* ``ha1``: the SIP digest HA1 = H(user:realm:password) per realm and algorithm (RFC 7616
  §3.4.2; MD5 and SHA-256 as ``[sip] auth_algorithms`` says), what the registrar checks a
  REGISTER against (``media_gateway/registrations.py``) without the password.

::

    version = 1

    [staff."alice"]
    web = "$argon2id$v=19$m=65536,t=3,p=4$..."
    updated = "2025-01-01T12:00:00Z"

    [staff."alice".ha1."hotline"]
    MD5 = "3f2c..."
    "SHA-256" = "9a1b..."

Who is staff, and their role, stays in the configuration's ``[[agents]]``; a name in the file
that the configuration does not know signs nobody in. A configuration ``password`` (plain text,
for simple setups and tests) is used only for a member the file does not list.

The file is read at start and again whenever it changes on disk (its modification time and
size, looked at on each check), so ``hotline passwd`` takes effect without a restart. Writes are
atomic: a temporary file in the same directory, fsync, rename.

With ``[database] url`` (several nodes; docs/cluster.md, "Staff accounts") the same entries live
in the database instead (hotline/auth/staff_db.py), and :meth:`StaffCredentials.open` reads them
from there: at the first start on an empty table the staff file's entries are imported once;
afterwards the database is the truth and the file is not read. The checks never touch the
database: they read an in-memory copy that :meth:`StaffCredentials.watch` refreshes in a worker
thread (every ``DB_POLL_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import os
import re
import secrets
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import argon2
import structlog

from hotline.config import Config
from media_gateway.sip.auth import digest_ha1

if TYPE_CHECKING:
    from hotline.auth.staff_db import StaffDatabase, Stamp

log = structlog.get_logger("hotline.auth")

FORMAT_VERSION = 1
ALGORITHMS = ("MD5", "SHA-256")

DB_POLL_SECONDS = 2.0
"""How often a node asks the database whether the staff table changed (one cheap query)."""

HEADER = (
    "# hotline staff credentials, written by `hotline passwd`: hashes only (argon2id for the\n"
    "# web, SIP digest HA1 per realm and algorithm). Keep it private (mode 0600).\n"
)


class StaffFileError(Exception):
    """The staff file cannot be read or does not have the expected shape."""


@dataclass(frozen=True, slots=True)
class StaffEntry:
    """One staff member's hashes."""

    user: str
    web: str
    """The argon2id hash (PHC string) of the password, for the API's sign-in."""
    ha1: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Realm -> algorithm -> HA1 (hex), for SIP digest."""
    updated: str = ""
    """When ``hotline passwd`` wrote it (ISO 8601, UTC)."""

    def ha1_for(self, realm: str, algorithm: str) -> str | None:
        return self.ha1.get(realm, {}).get(algorithm)


@functools.cache
def password_hasher() -> argon2.PasswordHasher:
    """argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: t=3, 64 MiB, p=4)."""
    return argon2.PasswordHasher()


def make_entry(
    user: str,
    password: str,
    *,
    realm: str,
    algorithms: tuple[str, ...],
    hasher: argon2.PasswordHasher | None = None,
    now: datetime | None = None,
) -> StaffEntry:
    """The hashes of ``password`` for ``user``: argon2id, and HA1 for ``realm`` per algorithm."""
    hasher = hasher or password_hasher()
    return StaffEntry(
        user=user,
        web=hasher.hash(password),
        ha1={realm: {a: digest_ha1(a, user, realm, password) for a in algorithms}},
        updated=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


# -- the file ---------------------------------------------------------------------------------


def _where(path: Path, line: int | None = None) -> str:
    return f"{path}:{line}" if line else str(path)


def parse_staff(text: str, *, path: Path) -> dict[str, StaffEntry]:
    """The entries of a staff file's text; raises :class:`StaffFileError` naming the place."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+)", str(exc))
        raise StaffFileError(
            f"{_where(path, int(m.group(1)) if m else None)}: not a TOML file: {exc}"
        ) from None
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise StaffFileError(f"{path}: version {version!r}: this hotline reads version 1")
    staff = data.get("staff", {})
    if not isinstance(staff, dict):
        raise StaffFileError(f"{path}: staff: expected a table of staff members")
    out: dict[str, StaffEntry] = {}
    for user, entry in staff.items():
        where = f"{path}: staff.{user}"
        if not isinstance(entry, dict):
            raise StaffFileError(f"{where}: expected a table")
        web = entry.get("web")
        if not isinstance(web, str) or not web.startswith("$argon2"):
            raise StaffFileError(f"{where}.web: expected an argon2 hash ($argon2id$...)")
        ha1: dict[str, dict[str, str]] = {}
        realms = entry.get("ha1", {})
        if not isinstance(realms, dict):
            raise StaffFileError(f"{where}.ha1: expected a table of realms")
        for realm, by_algorithm in realms.items():
            if not isinstance(by_algorithm, dict):
                raise StaffFileError(f"{where}.ha1.{realm}: expected a table of algorithms")
            for algorithm, value in by_algorithm.items():
                if algorithm not in ALGORITHMS:
                    raise StaffFileError(
                        f"{where}.ha1.{realm}.{algorithm}: expected MD5 or SHA-256"
                    )
                if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{32,64}", value):
                    raise StaffFileError(f"{where}.ha1.{realm}.{algorithm}: expected hex HA1")
                ha1.setdefault(realm, {})[algorithm] = value.lower()
        updated = entry.get("updated", "")
        out[user] = StaffEntry(user=user, web=web, ha1=ha1, updated=str(updated))
    return out


def read_staff(path: Path) -> dict[str, StaffEntry]:
    """The entries of the staff file at ``path``; an absent file has none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StaffFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise StaffFileError(f"{path}: not UTF-8 text") from None
    return parse_staff(text, path=path)


def _q(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def format_staff(entries: Mapping[str, StaffEntry]) -> str:
    lines = [HEADER, "\n", f"version = {FORMAT_VERSION}\n"]
    for user in sorted(entries):
        e = entries[user]
        lines.append(f"\n[staff.{_q(user)}]\n")
        lines.append(f"web = {_q(e.web)}\n")
        if e.updated:
            lines.append(f"updated = {_q(e.updated)}\n")
        for realm in sorted(e.ha1):
            lines.append(f"\n[staff.{_q(user)}.ha1.{_q(realm)}]\n")
            for algorithm in sorted(e.ha1[realm]):
                lines.append(f"{_q(algorithm)} = {_q(e.ha1[realm][algorithm])}\n")
    return "".join(lines)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def set_password(path: Path, entry: StaffEntry) -> None:
    """Write (or replace) one member's entry in the staff file, keeping the others."""
    entries = read_staff(path)
    entries[entry.user] = entry
    write_private(path, format_staff(entries))


# -- checks -----------------------------------------------------------------------------------


class StaffCredentials:
    """Checks staff passwords: the staff file's hashes (or the database's, ``database``),
    else the configuration's plain passwords. Re-reads the file when it changes; the
    database's rows are refreshed by :meth:`watch`."""

    def __init__(
        self,
        config: Config,
        *,
        path: Path | None = None,
        hasher: argon2.PasswordHasher | None = None,
        database: StaffDatabase | None = None,
    ) -> None:
        self.config = config
        self.path = path if path is not None else config.server.staff_path
        self.hasher = hasher or password_hasher()
        self.realm = config.sip.realm
        self.database = database
        """The shared staff table: the source instead of the file (read once here, then
        refreshed by :meth:`watch`, never by a check)."""
        self._entries: dict[str, StaffEntry] = {}
        self._stamp: tuple[int, int] | None = None
        self._db_stamp: Stamp | None = None
        self._db_failing = False
        self._watch: asyncio.Task[None] | None = None
        self._dummy: str | None = None
        self._loaded = False
        if database is not None:
            self._db_stamp, self._entries = database.read()
            self._loaded = True
        else:
            self.reload(strict=True)

    @classmethod
    def open(
        cls, config: Config, *, hasher: argon2.PasswordHasher | None = None, write: bool = True
    ) -> StaffCredentials:
        """A node's credentials: the staff file, or with ``[database] url`` the shared table
        (migrated if needed; the staff file imported if the table is empty, once, logged).
        ``write=False`` (``hotline check-config``): neither; an empty table reads as the file
        that the first start would import. Synchronous: run at start-up. Raises
        :class:`StaffFileError` (the file or the database cannot be read)."""
        if not config.database.url:
            return cls(config, hasher=hasher)
        database = open_staff_database(config, write=write)
        try:
            if not write and not database.exists():
                return cls(config, hasher=hasher)
            credentials = cls(config, hasher=hasher, database=database)
        finally:
            database.close()  # until watch() polls (it reconnects): no idle connection
        if not write and not credentials.entries:
            return cls(config, hasher=hasher)
        return credentials

    @property
    def source(self) -> str:
        """Where the hashes come from, in words (for messages)."""
        if self.database is not None:
            return f"the staff table ({self.database.where})"
        return f"the staff file {self.path}"

    # -- the database -----------------------------------------------------------------------------

    async def refresh(self) -> bool:
        """Ask the database (in a worker thread) whether the staff table changed, and read it
        again if so; whether the entries changed. A database that cannot be reached leaves the
        entries as they were (one log line when it fails, one when it is back)."""
        from hotline.auth.staff_db import StaffDatabaseError

        database = self.database
        if database is None:
            return False
        try:
            stamp = await asyncio.to_thread(database.stamp)
            if stamp == self._db_stamp:
                changed = False
            else:
                stamp, entries = await asyncio.to_thread(database.read)
                changed = entries != self._entries
                self._db_stamp, self._entries = stamp, entries
        except StaffDatabaseError as exc:
            if not self._db_failing:
                log.warning("staff_db_unreachable", error=str(exc), members=len(self._entries))
            self._db_failing = True
            return False
        if self._db_failing:
            log.info("staff_db_reachable", members=len(self._entries))
            self._db_failing = False
        if changed:
            log.info("staff_db_reloaded", members=len(self._entries))
        return changed

    async def watch(self, every: float = DB_POLL_SECONDS) -> None:
        """:meth:`refresh` every ``every`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(every)
            await self.refresh()

    async def start(self, every: float = DB_POLL_SECONDS) -> None:
        """Start :meth:`watch` (with a database; nothing to do for the file)."""
        if self.database is not None and self._watch is None:
            self._watch = asyncio.create_task(self.watch(every), name="staff-db-watch")

    async def stop(self) -> None:
        """Stop :meth:`watch` and close the database connection."""
        task, self._watch = self._watch, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.database is not None:
            await asyncio.to_thread(self.database.close)

    # -- the file -------------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload(self, *, strict: bool = False) -> None:
        """Read the file again if it changed. ``strict``: a broken file raises
        :class:`StaffFileError` (at start-up); otherwise the entries read before stay, and
        the mistake is logged."""
        if self.database is not None:
            return  # refreshed by watch(), never by a check
        stamp = self._stat()
        if self._loaded and stamp == self._stamp:
            return
        try:
            entries = read_staff(self.path)
        except StaffFileError as exc:
            if strict:
                raise
            log.error("staff_file_unreadable", error=str(exc))
            self._stamp = stamp
            return
        if self._loaded:
            log.info("staff_file_reloaded", path=str(self.path), members=len(entries))
        self._entries, self._stamp, self._loaded = entries, stamp, True

    def entry(self, user: str) -> StaffEntry | None:
        """The entry of a configured staff member in the file or the database (None: unknown,
        or not listed there)."""
        self.reload()
        if self.config.agent(user) is None:
            return None
        return self._entries.get(user)

    @property
    def entries(self) -> Mapping[str, StaffEntry]:
        self.reload()
        return dict(self._entries)

    # -- SIP --------------------------------------------------------------------------------------

    def ha1(self, user: str, algorithm: str) -> str | None:
        """The digest HA1 of ``user`` for the registrar's realm (``Registrations``'s
        ``ha1_for``): the file's (or the database's), else computed from a configuration
        password."""
        entry = self.entry(user)
        if entry is not None:
            return entry.ha1_for(self.realm, algorithm)
        account = self.config.agent(user)
        if account is None or account.password is None:
            return None
        return digest_ha1(algorithm, user, self.realm, account.password)

    # -- the web ----------------------------------------------------------------------------------

    def dummy_hash(self) -> str:
        """An argon2id hash of a random password, made with the same parameters as the real
        ones: what an unknown user's password is checked against (the same work)."""
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    def verify_web(self, user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s. Exactly one argon2 verification whatever the
        case (a member in the file, one with a configuration password, an unknown name), so
        the time taken says nothing about which it was. Blocking (~0.1 s): run in a thread."""
        entry = self.entry(user)
        encoded = entry.web if entry is not None else self.dummy_hash()
        ok: bool
        try:
            ok = self.hasher.verify(encoded, password)
        except argon2.exceptions.VerificationError:
            ok = False
        except argon2.exceptions.InvalidHashError:
            log.error("staff_hash_invalid", user=user)
            ok = False
        if entry is not None:
            return ok
        account = self.config.agent(user)
        plain = account.password if account is not None else None
        if plain is None:
            return False
        return hmac.compare_digest(plain.encode(), password.encode())

    # -- what check-config tells --------------------------------------------------------------

    def warnings(self) -> list[str]:
        """What ``hotline check-config`` warns about: plain-text passwords, members without
        any password, HA1s missing for the configured realm and algorithms."""
        out: list[str] = []
        entries = self.entries
        for account in self.config.agents:
            entry = entries.get(account.id)
            if account.password is not None:
                if entry is None:
                    out.append(
                        f"agents: {account.id!r} has a plain-text password in the "
                        f"configuration: run `hotline passwd {account.id}` and remove it"
                    )
                else:
                    out.append(
                        f"agents: {account.id!r}: the plain-text password in the configuration "
                        f"is ignored ({self.source} has their hashes): remove it"
                    )
            elif entry is None:
                out.append(
                    f"agents: {account.id!r} has no password: they cannot sign in or register "
                    f"until `hotline passwd {account.id}`"
                )
            if entry is not None:
                missing = [
                    a for a in self.config.sip.auth_algorithms if not entry.ha1_for(self.realm, a)
                ]
                if missing:
                    out.append(
                        f"{self.path if self.database is None else self.source}: "
                        f"{account.id!r} has no {'/'.join(missing)} HA1 for realm "
                        f"{self.realm!r}: their phones cannot register until `hotline passwd "
                        f"{account.id}`"
                    )
        return out


def open_staff_database(config: Config, *, write: bool = True) -> StaffDatabase:
    """The shared staff table of ``[database]``, migrated, with the staff file imported if the
    table has no row yet (once: afterwards the database is the truth); ``write=False``: as it
    is, nothing migrated or imported."""
    from hotline.auth.staff_db import StaffDatabase

    database = StaffDatabase(config.database.url, schema=config.database.schema)
    if not write:
        return database
    try:
        database.migrate()
        path = config.server.staff_path
        imported = database.import_once(read_staff(path))
    except BaseException:
        database.close()
        raise
    if imported:
        log.info(
            "staff_file_imported",
            path=str(path),
            members=imported,
            into=database.where,
            note="the database is the truth from now on; the file is no longer read",
        )
    return database
