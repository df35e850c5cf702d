"""``gleamx push``: upload a run directory (adapter or model, processor, card, plots) to the Hub.

The token comes from the environment (``HF_TOKEN``) or ``huggingface-cli login``;
it is never printed, and never written into cards or logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gleamx.errors import GleamConfigError, first_line
from gleamx.outputs import RECORD

# Checkpoints, optimizer states and pickled args are not part of a release.
IGNORE = ["checkpoint-*", "checkpoint-*/**", "*.bin", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "runs/**",
          "gleamx_run.json", RECORD, ".lock"]  # the last three: gleamx's own records of the folder
IGNORE_OK = ["pytorch_model.bin"]  # a legacy weight file is still a model


@dataclass
class PushPlan:
    repo_id: str
    private: bool
    files: list[str]
    card: str
    uploaded: bool = False

    def summary_lines(self) -> list[str]:
        """What ``gleamx push`` prints: the files; before an upload (``--dry-run``) the card as the Hub shows it."""
        verb = "uploaded" if self.uploaded else "would upload"
        lines = [f"{verb} {len(self.files)} file(s) to {self.repo_id} ({'private' if self.private else 'public'}):",
                 *(f"  {f}" for f in self.files)]
        if not self.uploaded:
            lines += ["--- model card (README.md) ---", self.card or "(no README.md in the output dir)"]
        return lines


def _ignored(rel: str) -> bool:
    from fnmatch import fnmatch

    if rel in IGNORE_OK:
        return False
    return any(fnmatch(rel, pat) for pat in IGNORE)


def plan_push(out: str | Path, repo_id: str, *, private: bool = False) -> PushPlan:
    """Exactly what :func:`push_output_dir` would upload."""
    out = Path(out)
    if not out.is_dir():
        raise GleamConfigError(f"{out}: not a directory (expected a training output directory)")
    if not any((out / f).is_file() for f in ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")):
        raise GleamConfigError(f"{out}: no adapter_model.safetensors or model.safetensors (expected a finished run)")
    if repo_id.count("/") != 1:
        raise GleamConfigError(f"--repo-id: expected user/name, got {repo_id!r}")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    files = [f for f in files if not _ignored(f)]
    card = (out / "README.md").read_text(encoding="utf-8") if (out / "README.md").is_file() else ""
    return PushPlan(repo_id, private, files, card_for_repo(card, repo_id))


def card_for_repo(card: str, repo_id: str) -> str:
    """The card as the Hub shows it: its usage snippet's ``RUN = ...`` line names the repo, not the local folder."""
    import re

    from gleamx.hub.card import RUN_LINE

    head, tail = RUN_LINE.split("{run!r}")
    return re.sub(rf"^{re.escape(head)}.*?{re.escape(tail)}$", lambda m: RUN_LINE.format(run=repo_id), card,
                  flags=re.MULTILINE)


def push_output_dir(out: str | Path, repo_id: str, *, private: bool = False, dry_run: bool = False) -> PushPlan:
    """Create the repo (if needed) and upload the planned files in one commit."""
    plan = plan_push(out, repo_id, private=private)
    if dry_run:
        return plan
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()  # reads HF_TOKEN or the login cache; we never handle the token ourselves
    # One commit: every planned file from disk, the card as the Hub shows it (its snippet names the repo).
    ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=plan.card.encode("utf-8") if f == "README.md"
                              else str(Path(out) / f)) for f in plan.files]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.create_commit(repo_id=repo_id, operations=ops, commit_message="Upload GLEAM-X model trained with gleamx")
    except HfHubHTTPError as e:
        first = first_line(e)
        raise GleamConfigError(f"push to {repo_id}: {first}") from None
    except Exception as e:  # offline, no token, ...
        raise GleamConfigError(f"push to {repo_id}: {first_line(e, with_type=True)}") from None
    plan.uploaded = True
    return plan
