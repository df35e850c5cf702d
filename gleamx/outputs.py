"""The one output rule of every command that writes: what it may write where, and what ``--overwrite`` replaces.

* **Never into its own input.** An output folder equal to, inside or around an input folder (``--out`` under
  ``--data``, ``--retrieval``, ``--base``, ...), or an output file that is an input or lies in an input folder, is
  refused: a rerun would read what it just wrote, and ``--overwrite`` would delete the input.
* **A folder gleamx wrote says so.** :func:`claim_folder` records in ``.gleamx_outputs.json`` which command wrote
  the folder, with which settings (its *identity*), and which of the folder's entries were there before (the
  user's). Once the command finishes, :meth:`OutputFolder.done` lists exactly what it wrote; a run killed before
  that counts everything but the user's entries as its own.
* **Refused in one line, unless ``--overwrite``:** a folder holding entries gleamx did not write, or the output of
  another command or of other settings (the changed settings named). The same command with the same settings may
  write again (a rerun, a resume).
* **``--overwrite`` replaces only what gleamx wrote:** the entries the last run's record lists are deleted; the
  user's stay, and a command that would write over one of them (``writes``) is refused even then.
* An output that exists with the wrong kind (a file where a folder is written, a folder where a file is) is one
  line.

Files are the simple case (:func:`claim_file`): an existing file is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gleamx.errors import GleamConfigError

RECORD = ".gleamx_outputs.json"
Inputs = Mapping[str, "str | os.PathLike[str] | None"]


def _resolved(p: str | os.PathLike[str]) -> Path:
    return Path(p).expanduser().resolve()


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies under it."""
    return a == b or b in a.parents


def check_not_input(out: str | os.PathLike[str], flag: str, inputs: Inputs, *, folder: bool = True) -> None:
    """One line when ``out`` is one of ``inputs`` (``{flag: path}``), lies in an input folder, or (a ``folder``
    output) holds an input. ``None`` and names that are no local path (Hub ids) are skipped."""
    target = _resolved(out)
    for in_flag, value in inputs.items():
        if value is None or not Path(value).expanduser().exists():
            continue
        source = _resolved(value)
        relation = ("is" if target == source else "lies in" if _inside(target, source) else
                    "holds" if folder and _inside(source, target) else None)
        if relation:
            raise GleamConfigError(f"{flag}: {out} {relation} {in_flag} {value}: a command never writes into its "
                                   f"own input (a rerun would read its own output, --overwrite would delete the "
                                   f"input); choose another {flag}")


def claim_file(out: str | os.PathLike[str], flag: str, *, overwrite: bool, inputs: Inputs = {}) -> Path:
    """``out`` as a file to write: not an input, not a folder, and replaced only with ``--overwrite``; its folder
    is made."""
    path = Path(out)
    check_not_input(path, flag, inputs, folder=False)
    if path.is_dir():
        raise GleamConfigError(f"{flag}: {out} is a folder (expected a file name to write)")
    if path.exists() and not overwrite:
        raise GleamConfigError(f"{flag}: {out} exists; choose another {flag} or pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class OutputFolder:
    """A folder claimed by :func:`claim_folder`; :meth:`done` records what the command wrote there."""

    path: Path
    command: str
    identity: dict[str, Any]
    kept: list[str] = field(default_factory=list)  # the user's entries, there before gleamx wrote here
    created: bool = False  # the claim made the folder

    def abandon(self) -> None:
        """The run was refused after its claim (bad data, a model that does not load): a folder the claim made that
        holds nothing but gleamx's bookkeeping is removed, so a refused run leaves no folder behind."""
        if self.created and self.path.is_dir() and not _entries(self.path):
            shutil.rmtree(self.path, ignore_errors=True)

    def done(self) -> None:
        """Record the finished run: every entry of the folder but the user's is what it wrote."""
        _write_record(self.path, {"command": self.command, "identity": self.identity, "kept": self.kept,
                                  "written": _entries(self.path, skip=self.kept)})


_CLAIMED: list[OutputFolder] = []  # folders this process's claims made, newest last (abandon_claims)


def abandon_claims() -> None:
    """A command stopped by an error: every folder its claims made that holds nothing but gleamx's bookkeeping is
    removed, newest first (a run refused after its claim, e.g. on its data or model, leaves no folder behind)."""
    while _CLAIMED:
        _CLAIMED.pop().abandon()


def forget_claims() -> None:
    """A command that finished: its folders are its output, never abandoned by a later command of the process."""
    _CLAIMED.clear()


LOCK_NAME = ".lock"  # the single-writer lock file (gleamx.eval.appendlog.single_writer)
OWN = (RECORD, f"{RECORD}.tmp", LOCK_NAME)  # gleamx's own bookkeeping in a folder it writes


def _entries(folder: Path, skip: Iterable[str] = ()) -> list[str]:
    """The folder's entries, gleamx's bookkeeping and ``skip`` left out."""
    left_out = {*OWN, *skip}
    return sorted(p.name for p in folder.iterdir() if p.name not in left_out) if folder.is_dir() else []


def read_record(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The folder's record, or ``None`` (none, or unreadable: then nothing in it is known to be gleamx's)."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("identity"), dict) else None


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    tmp = folder / f"{RECORD}.tmp"
    tmp.write_text(json.dumps(record, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, folder / RECORD)


def changed_settings(identity: Mapping[str, Any], old: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The keys whose values differ between two identities; nested settings as ``part.key``."""
    changed = []
    for k in sorted(set(identity) | set(old)):
        a, b = identity.get(k), old.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changed += changed_settings(a, b, f"{prefix}{k}.")
        elif a != b:
            changed.append(f"{prefix}{k}")
    return changed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def as_recorded(identity: Mapping[str, Any]) -> dict[str, Any]:
    """A run's identity as its record reads back (JSON types; anything else as text): what it is compared as."""
    return json.loads(json.dumps(dict(identity), default=str))


def check_checkpoint_source(checkpoint: str | os.PathLike[str] | None, out: str | os.PathLike[str],
                            identity: Mapping[str, Any], *, flag: str = "resume_from_checkpoint",
                            legacy_identity: Callable[[Path], Mapping[str, Any] | None] | None = None) -> None:
    """A checkpoint from another folder must come from a run with ``identity``: its folder's record (or, for a
    folder an older gleamx wrote, ``legacy_identity(folder)``) must hold the same settings, or one line names the
    changed keys. Resumed with other settings, a run would go on at the restored schedule and state while its
    records claim the new values. This folder's own checkpoint (which :func:`claim_folder` adopts) and a bare copied
    checkpoint, whose run left no record, pass."""
    if checkpoint is None:
        return
    source = Path(checkpoint).resolve().parent
    if source == Path(out).resolve():
        return
    record = read_record(source)
    old = record["identity"] if record is not None else legacy_identity(source) if legacy_identity else None
    changed = [] if old is None else changed_settings(as_recorded(identity), old)
    if changed:
        raise GleamConfigError(f"{flag}: {checkpoint} is a checkpoint of another run (changed: "
                               f"{', '.join(changed[:6])}); resume with that run's settings, or start a new run "
                               f"without {flag}")


def claim_folder(out: str | os.PathLike[str], flag: str, *, command: str, identity: Mapping[str, Any],
                 overwrite: bool, inputs: Inputs = {}, writes: Iterable[str] = (),
                 marker: str | None = None, exclusive: bool = False, adopt: Iterable[str] = (),
                 overwrite_flag: str = "--overwrite", legacy_identity: Mapping[str, Any] | None = None,
                 write: bool = True, replace: bool = True) -> OutputFolder:
    """Check ``out`` against the module's rule for ``command`` with ``identity`` (its settings, JSON-able), then
    make it, with ``--overwrite`` delete what gleamx wrote there, and record the claim. ``writes``: top-level
    names the command writes, which must not be the user's even under ``--overwrite``. ``marker``: a file the
    command has always written (e.g. ``synth_config.json``); a folder holding it and no record is the command's
    output from before records were kept (another run of it: refused unless ``--overwrite``, which replaces it).
    ``exclusive``: the folder must hold nothing but this command's output, even under ``--overwrite`` (a model
    folder, whose file names the saving library chooses and whose loader reads what it finds). ``adopt``: entries
    the user named as this run's own (a checkpoint copied in to resume from). ``overwrite_flag``: the command's
    spelling of ``--overwrite`` in the messages. ``legacy_identity``: the settings an older gleamx recorded its own
    way (beside ``marker``). ``write=False`` only checks (the other processes of a multi-process run).
    ``replace=False``: ``--overwrite`` lets the command write beside the user's files but deletes nothing (eval,
    whose own record decides which of its answers and paid judge replies a new config may reuse)."""
    path = Path(out)
    check_not_input(path, flag, inputs)
    if path.exists() and not path.is_dir():
        raise GleamConfigError(f"{flag}: {out} is a file (expected a folder to write into)")
    identity = as_recorded(identity)
    record = read_record(path)
    entries = _entries(path)
    if record is None and marker and (path / marker).is_file():  # written by an older gleamx: all of it is its own
        record = {"command": command, "identity": dict(legacy_identity or {"written by": "an older gleamx"}),
                  "written": entries}
    if record is None:
        accepted, ours = [], []
    else:  # the user's entries accepted before (--overwrite wrote beside them), and what gleamx wrote
        accepted = [n for n in record.get("kept", []) if n in entries]
        listed = record.get("written")
        ours = [n for n in (listed if isinstance(listed, list) else entries) if n in entries and n not in accepted]
    ours += [n for n in adopt if n in entries and n not in ours]
    unknown = [n for n in entries if n not in ours and n not in accepted]
    if not overwrite:
        if record is not None and (record.get("command") != command or record.get("identity") != identity):
            what = (f"the output of `gleamx {record.get('command')}`" if record.get("command") != command else
                    f"a run of `gleamx {command}` with other settings (changed: "
                    f"{', '.join(changed_settings(identity, record['identity'])[:6])})")
            raise GleamConfigError(f"{flag}: {out} holds {what}; choose another {flag}, or pass {overwrite_flag} "
                                   "to replace it (files gleamx did not write are kept)")
        if unknown:
            raise GleamConfigError(f"{flag}: {out} holds files gleamx did not write (e.g. {unknown[0]}); choose "
                                   f"another {flag}, or pass {overwrite_flag} to write beside them (they are kept)")
    kept = accepted + unknown
    if exclusive and kept:
        raise GleamConfigError(f"{flag}: {out} holds files gleamx did not write (e.g. {kept[0]}) and this command "
                               f"needs a folder of its own; choose another {flag}")
    clash = sorted(set(writes) & set(kept))
    if clash:
        raise GleamConfigError(f"{flag}: {out}/{clash[0]} was not written by gleamx and this command would replace "
                               "it; move it away or choose another folder")
    folder = OutputFolder(path, command, identity, kept, created=not path.exists())
    if not write:
        return folder
    if folder.created:
        _CLAIMED.append(folder)
    if overwrite and replace:
        for name in ours:
            _remove(path / name)
    path.mkdir(parents=True, exist_ok=True)
    _write_record(path, {"command": command, "identity": identity, "kept": kept, "written": None})
    return folder


def overwrite_option() -> Any:
    """The ``--overwrite`` field of every command config that writes (one help text for all)."""
    return field(default=False, metadata={"help": "replace what gleamx wrote there before (files gleamx did not "
                                                  "write are kept)"})


__all__ = ["RECORD", "OutputFolder", "changed_settings", "check_not_input", "claim_file", "claim_folder",
           "overwrite_option", "read_record"]
