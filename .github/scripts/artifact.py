#!/usr/bin/env python3
"""Build once, promote: the release artifact staging deployed is the one production gets.

  keep OUT     after the staging deploy: copy the artifact it deployed (the build of this
               checkout's sources, looked up in build/releases/index.json, never rebuilt)
               and its SHA-256 file into OUT; outputs `name` (the workflow artifact's name)
  find         in the production run: the newest unexpired workflow artifact of that name
               uploaded by a successful push run of deploy-staging.yml on the staging
               branch; outputs `artifact-id` and `run-id`
  verify DIR   exactly one release artifact in DIR whose SHA-256 is the one its file (and
               --sha256, when given) names; outputs `artifact` (its absolute path), `sha256`

The name is keyed by the build's source key (scripts/build_release.py's hash of app/, its
lock app/requirements.txt included), not by the commit: staging deploys `feature` and production `main`, and
a merge commit on `main` holds the same app sources as the `feature` commit staging ran.
Outputs go to $GITHUB_OUTPUT when it is set, and to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import build_release  # noqa: E402  (scripts/ is not a package)

# The branch deploy-staging.yml deploys from (its `on.push.branches`; a test keeps them equal).
STAGING_BRANCH = "feature"
STAGING_WORKFLOW = ".github/workflows/deploy-staging.yml"


def fail(message: str) -> None:
    print(f"::error::{message}")
    raise SystemExit(1)


def output(**values: str) -> None:
    lines = "".join(f"{k}={v}\n" for k, v in values.items())
    sys.stdout.write(lines)
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as f:
            f.write(lines)


def artifact_name(project: Path) -> str:
    return f"webapp-release-{build_release.build_key(project)}"


def keep(project: Path, releases: Path, out: Path) -> None:
    key = build_release.build_key(project)  # tested builds only: no "-untested" suffix
    entry = build_release.load_index(releases).get(key)
    if not entry:
        fail(f"no tested build of these sources in {releases}: the deploy did not build one")
    artifact = Path(entry["artifact"])
    if not artifact.is_file() or build_release.sha256_file(artifact) != entry["artifact_sha256"]:
        fail(f"{artifact} is missing or differs from the build the deploy recorded")
    if entry.get("tests") != "passed":
        fail(f"{artifact} was built without passing the app's tests")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(artifact, out / artifact.name)
    (out / f"{artifact.name}.sha256").write_text(f"{entry['artifact_sha256']}  {artifact.name}\n")
    output(name=artifact_name(project), release=entry["release_id"], sha256=entry["artifact_sha256"])


def verify(folder: Path, expected: str) -> None:
    found = sorted(folder.glob("webapp-*.tar.gz")) if folder.is_dir() else []
    if len(found) != 1:
        fail(f"expected one release artifact in {folder}, found {[p.name for p in found] or 'none'}")
    artifact = found[0].resolve()
    sums = artifact.with_name(artifact.name + ".sha256")
    try:
        recorded, name = sums.read_text().split()
    except (OSError, ValueError):
        fail(f"{sums.name} is missing or not '<sha256>  <file>'")
    actual = build_release.sha256_file(artifact)
    if name != artifact.name or actual != recorded:
        fail(f"{artifact.name}: SHA-256 {actual}, but {sums.name} says {recorded} for {name}")
    if expected and actual != expected:
        fail(f"{artifact.name}: SHA-256 {actual}, expected {expected}")
    output(artifact=str(artifact), sha256=actual)


def choose(artifacts: list[dict], runs: dict[int, dict]) -> dict | None:
    """The newest unexpired artifact uploaded by a successful staging deploy run."""
    good = [a for a in artifacts if not a.get("expired")
            and (run := runs.get(a["workflow_run"]["id"]))
            and run.get("path") == STAGING_WORKFLOW and run.get("event") == "push"
            and run.get("head_branch") == STAGING_BRANCH and run.get("conclusion") == "success"]
    return max(good, key=lambda a: a["created_at"], default=None)


def api(path: str) -> dict:
    url = f"{os.environ.get('GITHUB_API_URL', 'https://api.github.com')}/repos/{os.environ['GITHUB_REPOSITORY']}/{path}"
    request = urllib.request.Request(url, headers={
        "Authorization": f"Bearer {os.environ['GH_TOKEN']}",
        "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def find(project: Path) -> None:
    name = artifact_name(project)
    artifacts = api(f"actions/artifacts?name={name}&per_page=100")["artifacts"]
    runs = {}
    for run_id in {a["workflow_run"]["id"] for a in artifacts}:
        try:
            runs[run_id] = api(f"actions/runs/{run_id}")
        except urllib.error.HTTPError as err:  # a deleted run: its artifacts do not count
            if err.code != 404:
                raise
    chosen = choose(artifacts, runs)
    if chosen is None:
        fail(f"no artifact {name} from a successful run of {STAGING_WORKFLOW} on {STAGING_BRANCH}: "
             "these app sources never passed staging (or its artifact expired); push them to "
             f"{STAGING_BRANCH} first")
    output(**{"artifact-id": str(chosen["id"]), "run-id": str(chosen["workflow_run"]["id"]), "name": name})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("keep")
    p.add_argument("out", type=Path)
    p.add_argument("--releases", type=Path, default=None, help="default: <project>/build/releases")
    sub.add_parser("find")
    p = sub.add_parser("verify")
    p.add_argument("folder", type=Path)
    p.add_argument("--sha256", default="")
    args = parser.parse_args()
    project = args.project.resolve()
    if args.command == "keep":
        keep(project, (args.releases or project / "build" / "releases").resolve(), args.out)
    elif args.command == "find":
        find(project)
    else:
        verify(args.folder, args.sha256)


if __name__ == "__main__":
    main()
