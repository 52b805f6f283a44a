"""Privilege grants, kept by the emulator because fakesnow has none.

Objects are keyed by their Snowflake name: ``(db,)``, ``(db, schema)`` or
``(db, schema, object)``, each part exactly as Snowflake stores it (unquoted
names upper-cased). Statements that rename, swap, clone or drop objects move
the grants the way Snowflake documents; the comments on each method cite the
rule. Roles are not modelled beyond their names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

Name = tuple[str, ...]

# test hook: see GrantStore._lose_on_swap
LOST_ON_SWAP = "AIRLOCK_LOST_"


@dataclass(frozen=True)
class Grant:
    privilege: str  # "SELECT", "USAGE", "CREATE TABLE", "OWNERSHIP", ...
    kind: str  # "DATABASE" | "SCHEMA" | "TABLE" | "VIEW"
    name: Name
    grantee: str  # role name
    grant_option: bool
    granted_by: str
    created_on: float  # epoch seconds

    def key(self) -> tuple[str, str, Name, str]:
        return (self.privilege, self.kind, self.name, self.grantee)


@dataclass(frozen=True)
class FutureGrant:
    """``GRANT ... ON FUTURE <object_type>S IN SCHEMA|DATABASE <container>``."""

    privilege: str
    object_type: str  # "TABLE" | "VIEW" | "SCHEMA"
    container: Name  # (db,) or (db, schema)
    grantee: str
    grant_option: bool
    created_on: float


def _renamed(name: Name, old: Name, new: Name) -> Name | None:
    """name with the prefix old replaced by new, or None when old is not a prefix."""
    return new + name[len(old) :] if name[: len(old)] == old else None


class GrantStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[tuple[str, str, Name, str], Grant] = {}
        self._future: dict[tuple[str, str, Name, str], FutureGrant] = {}
        # test hook: roles whose privileges one swap has already lost
        self._lost: set[str] = set()

    # -- GRANT / REVOKE ------------------------------------------------------------------
    def grant(
        self, kind: str, name: Name, privileges: Iterable[str], grantee: str, grant_option: bool, granted_by: str
    ) -> None:
        """Granting a privilege a role already holds is a no-op in Snowflake, except that
        WITH GRANT OPTION upgrades it."""
        with self._lock:
            for privilege in privileges:
                g = Grant(privilege, kind, name, grantee, grant_option, granted_by, time.time())
                old = self._grants.get(g.key())
                if old is None:
                    self._grants[g.key()] = g
                elif grant_option and not old.grant_option:
                    self._grants[g.key()] = replace(old, grant_option=True)

    def revoke(self, kind: str, name: Name, privileges: Iterable[str], grantee: str, grant_option_only: bool) -> None:
        """REVOKE of a privilege that is not held succeeds silently in Snowflake.
        REVOKE GRANT OPTION FOR keeps the privilege and drops only the option."""
        with self._lock:
            for privilege in privileges:
                key = (privilege, kind, name, grantee)
                if key not in self._grants:
                    continue
                if grant_option_only:
                    self._grants[key] = replace(self._grants[key], grant_option=False)
                else:
                    del self._grants[key]

    def set_owner(self, kind: str, name: Name, role: str, granted_by: str) -> None:
        """An object has exactly one OWNERSHIP grant: to the role that created it (or
        that it was handed to with GRANT OWNERSHIP)."""
        with self._lock:
            for key in [k for k, g in self._grants.items() if g.name == name and g.privilege == "OWNERSHIP"]:
                del self._grants[key]
            g = Grant("OWNERSHIP", kind, name, role, True, granted_by, time.time())
            self._grants[g.key()] = g

    def owner(self, name: Name) -> str | None:
        with self._lock:
            return next(
                (g.grantee for g in self._grants.values() if g.name == name and g.privilege == "OWNERSHIP"), None
            )

    def grant_future(
        self, object_type: str, container: Name, privileges: Iterable[str], grantee: str, grant_option: bool
    ) -> None:
        with self._lock:
            for privilege in privileges:
                f = FutureGrant(privilege, object_type, container, grantee, grant_option, time.time())
                self._future.setdefault((privilege, object_type, container, grantee), f)

    def revoke_future(self, object_type: str, container: Name, privileges: Iterable[str], grantee: str) -> None:
        with self._lock:
            for privilege in privileges:
                self._future.pop((privilege, object_type, container, grantee), None)

    # -- reading -------------------------------------------------------------------------
    def on(self, name: Name) -> list[Grant]:
        with self._lock:
            return sorted((g for g in self._grants.values() if g.name == name), key=_order)

    def to_role(self, role: str) -> list[Grant]:
        with self._lock:
            return sorted((g for g in self._grants.values() if g.grantee == role), key=_order)

    def future_in(self, container: Name) -> list[FutureGrant]:
        with self._lock:
            return sorted(
                (f for f in self._future.values() if f.container == container),
                key=lambda f: (f.created_on, f.object_type, f.privilege, f.grantee),
            )

    # -- object lifecycle ----------------------------------------------------------------
    def created(self, kind: str, name: Name, role: str, copy: list[Grant] | None = None) -> None:
        """A new object: OWNERSHIP goes to the creating role. With COPY GRANTS the
        other privileges of ``copy`` (the grants of the replaced or source object,
        read before it was dropped) are re-created on it, never OWNERSHIP, and future
        grants are NOT applied; without it the container's future grants are
        (schema-level future grants take precedence over database-level ones)."""
        self.set_owner(kind, name, role, role)
        with self._lock:
            if copy is not None:
                new = [replace(g, kind=kind, name=name, created_on=time.time()) for g in copy]
            else:
                new = [
                    Grant(f.privilege, kind, name, f.grantee, f.grant_option, role, time.time())
                    for f in self._applicable_futures(kind, name)
                ]
            for g in new:
                if g.privilege != "OWNERSHIP":
                    self._grants.setdefault(g.key(), g)

    def _applicable_futures(self, kind: str, name: Name) -> list[FutureGrant]:
        containers = [name[:2], name[:1]] if len(name) == 3 else [name[:1]]
        for container in containers:
            found = [f for f in self._future.values() if f.object_type == kind and f.container == container]
            if found:
                return found
        return []

    def dropped(self, name: Name) -> None:
        """DROP removes the object's grants, its children's and the future grants it
        holds as a container. (CREATE OR REPLACE without COPY GRANTS drops too.)"""
        with self._lock:
            self._grants = {k: g for k, g in self._grants.items() if g.name[: len(name)] != name}
            self._future = {k: f for k, f in self._future.items() if f.container[: len(name)] != name}

    def renamed(self, old: Name, new: Name) -> None:
        """A renamed object keeps every grant on it and on its children."""
        with self._lock:
            self._grants = {
                g.key(): g
                for g in (replace(g, name=_renamed(g.name, old, new) or g.name) for g in self._grants.values())
            }
            self._future = {
                (f.privilege, f.object_type, f.container, f.grantee): f
                for f in (
                    replace(f, container=_renamed(f.container, old, new) or f.container) for f in self._future.values()
                )
            }

    def swapped(self, a: Name, b: Name) -> None:
        """SWAP WITH is a rename of both objects in one step: the grants travel with
        the objects, so grants on a (and its children) are now on b and vice versa."""
        with self._lock:

            def swap(name: Name) -> Name:
                return _renamed(name, a, b) or _renamed(name, b, a) or name

            self._grants = {g.key(): g for g in (replace(g, name=swap(g.name)) for g in self._grants.values())}
            self._future = {
                (f.privilege, f.object_type, f.container, f.grantee): f
                for f in (replace(f, container=swap(f.container)) for f in self._future.values())
            }
            self._lose_on_swap(b)

    def _lose_on_swap(self, b: Name) -> None:
        """Test hook, not Snowflake: privileges of a role named ``AIRLOCK_LOST_*``
        on the second schema of a swap (the one named after SWAP WITH) and on its
        objects are revoked by the swap -- once per role -- standing for a privilege
        someone else revokes while a publish runs. The caller holds the lock."""
        lost = {
            g.grantee
            for g in self._grants.values()
            if g.grantee.startswith(LOST_ON_SWAP) and g.grantee not in self._lost and g.name[: len(b)] == b
        }
        if lost:
            self._grants = {k: g for k, g in self._grants.items() if not (g.grantee in lost and g.name[: len(b)] == b)}
            self._lost |= lost

    def cloned_container(self, kind: str, source: Name, clone: Name, role: str) -> None:
        """Cloning a database or schema: the clone inherits all grants on the clones
        of its child objects, but the container clone does not inherit the grants on
        the source container; the cloning role owns it."""
        with self._lock:
            children = [
                g for g in self._grants.values() if len(g.name) > len(source) and g.name[: len(source)] == source
            ]
            for g in children:
                ng = replace(g, name=clone + g.name[len(source) :], created_on=time.time())
                self._grants[ng.key()] = ng
        self.set_owner(kind, clone, role, role)


def _order(g: Grant) -> tuple[float, Name, str, str]:
    return (g.created_on, g.name, g.privilege, g.grantee)
