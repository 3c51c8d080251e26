"""``dvc push`` from a pipeline run, its failures as one message each.

On a cluster the worker's disk goes away with the job: the pipeline flow's ``push=True``
sends the outputs (prepared data, weights, reports) to the project's default DVC remote,
an S3 bucket for instance (docs/cluster.md), where ``dvc pull`` on any machine gets them.
DVC's own errors name boto's exception ("unexpected error - Forbidden: An error occurred
(403) when calling the HeadObject operation"); here they become what to do about it.
Nothing is lost when a push fails: the outputs stay in the workspace and its DVC cache.

From a shell: ``make push``, or ``.venv/bin/python -m pipelines.remote [PROJECT] [--jobs N]``,
is ``dvc push`` with the same one message on failure (exit code 1).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.commands import venv_bin, venv_env
from ssd.errors import SSDError


class RemoteError(SSDError, RuntimeError):
    """``dvc push`` to the DVC remote failed; the message says why and what to do."""


# (what DVC's output holds, what it means, what to do). Checked in order; the first match wins.
_CAUSES = (
    (
        ("Unable to locate credentials", "NoCredentialsError", "no credentials"),
        "found no credentials",
        "give this machine the remote's credentials: AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY in the worker's environment, or `dvc remote modify --local "
        "{name} access_key_id ...` and `... secret_access_key ...`",
    ),
    (
        (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "Forbidden",
            "(403)",
            "ExpiredToken",
        ),
        "refused the credentials (access denied)",
        "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the remote's access_key_id and "
        "secret_access_key in .dvc/config.local) and that this key may write to the bucket",
    ),
    (
        ("NoSuchBucket", "bucket does not exist"),
        "has no such bucket",
        "create the bucket, or fix the remote's url (`dvc remote modify {name} url s3://...`)",
    ),
    (
        (
            "Could not connect",
            "EndpointConnectionError",
            "Connection refused",
            "Cannot connect to host",
            "timed out",
            "Name or service not known",
        ),
        "could not be reached",
        "check the remote's endpointurl and the network (`dvc remote modify {name} "
        "endpointurl https://...`)",
    ),
)


def _default_remote(root: Path) -> tuple[str, str]:
    """The default remote's name and url, as ``dvc remote default`` / ``list`` say."""

    def ask(*args: str) -> str:
        p = subprocess.run([venv_bin("dvc"), *args], cwd=root, capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""

    name = ask("remote", "default")
    if not name:
        raise RemoteError(
            f"{root} has no default DVC remote, so there is nowhere to push: add one with "
            "`dvc remote add -d storage s3://BUCKET/PATH` (docs/cluster.md)"
        )
    # `dvc remote list`: "name<TAB>url" and "<TAB>(default)" after the default one
    urls = {
        parts[0]: parts[1]
        for parts in (line.split() for line in ask("remote", "list").splitlines())
        if len(parts) >= 2
    }
    return name, urls.get(name, "?")


def explain(output: str, name: str, url: str) -> str:
    """One message for a failed ``dvc push``'s ``output``."""
    where = f"the DVC remote '{name}' ({url})"
    kept = (
        "; nothing is lost: the outputs stay in this workspace and its DVC cache, run "
        "`dvc push` again once that is fixed"
    )
    for needles, what, fix in _CAUSES:
        if any(n.lower() in output.lower() for n in needles):
            return f"`dvc push` failed: {where} {what}: {fix.format(name=name)}{kept}"
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    last = errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1]
    return f"`dvc push` to {where} failed: {last.strip()}{kept}"


def push(
    project_dir: str | Path, jobs: int | None = None, log: Callable[[str], None] | None = None
) -> str:
    """``dvc push`` in ``project_dir`` to its default remote; once it succeeded, each line of
    DVC's output to ``log``. Raises :class:`RemoteError` with the cause and the fix, and
    nothing of DVC's own error output (its ERROR line, its "Having any troubles?" footer)
    goes to ``log``: the message says it once."""
    root = Path(project_dir)
    name, url = _default_remote(root)
    cmd = [venv_bin("dvc"), "push", *(["--jobs", str(jobs)] if jobs else [])]
    # captured, not streamed: out of a terminal DVC shows no progress, only a summary line
    p = subprocess.run(cmd, cwd=root, env=venv_env(), capture_output=True, text=True)
    output = p.stdout + p.stderr
    if p.returncode != 0:
        raise RemoteError(explain(output, name, url))
    for line in output.splitlines():
        if line.strip() and log is not None:
            log(line.rstrip())
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.remote",
        description="dvc push to the project's default DVC remote; a failure is one message "
        "naming the remote, the cause and the fix.",
    )
    parser.add_argument("project_dir", nargs="?", default=".", help="the project (default: .)")
    parser.add_argument("--jobs", type=int, help="parallel uploads (dvc push --jobs)")
    args = parser.parse_args(argv)
    try:
        push(args.project_dir, args.jobs, log=print)
    except RemoteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
