"""GitHub delivery: one signed-off commit through the Git Database API, one PR, gate check runs.

Why the Git Database API (blobs → tree → commit → ref) and not `git push`: a commit the App creates
this way, with NO custom author/committer, is signed by GitHub and shown as Verified; the DCO
`Signed-off-by:` trailer carries the bot identity `<slug>[bot] <ID+slug[bot]@users.noreply.github.com>`.
The commit's parent is always the base head, so the branch holds exactly one commit on the base; a
rerun force-moves the same branch and updates the same PR (found by head branch), never a second PR.

Everything here takes an installation-authenticated githubkit `GitHub` client; retry/throttle policy
is the caller's (bot.github.GitHubClient.call). Check-run buttons come back as `check_run`
`requested_action` events; the buttons are declared once in `bot.commands.CHECK_ACTIONS`, which
the intake (bot/behaviours/check_run_actions.py) reads back.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from githubkit.exception import RequestFailed

from bot.commands import CANCEL, CHECK_ACTIONS, RERUN_DUMMY, RERUN_REAL, CheckAction
from bot.github import GitHubError
from runners.artifacts.builders import CHECK_RUN_TEXT_LIMIT, COMMENT_LIMIT, Delivery, check_run_output, fit
from runners.artifacts.facts import JobFacts
from runners.delivery_local import DeliveryError, collect_files, with_signoff
from runners.links import job_url
from runners.verdict import Verdict

log = logging.getLogger(__name__)
T = TypeVar("T")

#: check-run button identifier -> (intent, stage), derived from the one declaration
ACTION_INTENTS: dict[str, tuple[str, str | None]] = {
    a.identifier: (a.command, a.stage) for a in CHECK_ACTIONS
}


class Caller(Protocol):
    """bot.github.GitHubClient.call: retries 5xx/rate limits, spaces writes, finds lost creates."""

    def __call__(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        mutating: bool = False,
        marker_check: Callable[[], T | None] | None = None,
    ) -> T: ...


def direct_call(
    what: str,
    fn: Callable[[], T],
    *,
    mutating: bool = False,
    marker_check: Callable[[], T | None] | None = None,
) -> T:
    """No retry policy (tests, scripts): the request as is."""
    del what, mutating, marker_check
    return fn()


def bot_signoff(slug: str, bot_user_id: int) -> str:
    """The App's DCO identity (the bot *user* id, as GitHub's noreply address uses)."""
    return f"{slug}[bot] <{bot_user_id}+{slug}[bot]@users.noreply.github.com>"


@dataclass(frozen=True)
class PullDelivery:
    number: int
    url: str
    sha: str
    branch: str
    base_sha: str
    draft: bool
    created: bool  # False when an existing PR was updated (rerun)
    files: tuple[str, ...]


def _split(repo: str) -> tuple[str, str]:
    owner, _, name = repo.partition("/")
    if not owner or not name:
        raise DeliveryError(f"repository must be 'owner/name', got {repo!r}")
    return owner, name


def _status(exc: Exception) -> int | None:
    if isinstance(exc, RequestFailed):
        return int(exc.response.status_code)
    status = getattr(exc, "status", None)
    return int(status) if isinstance(status, int) else None


#: the same two helpers for bot/checks.py (the job's own check run)
repo_parts = _split
status_of = _status

#: what a failed request raises: githubkit's error, or bot.github's wrapper of it (with .status)
REQUEST_ERRORS: tuple[type[Exception], ...] = (RequestFailed, GitHubError)


def create_commit(
    gh: Any,
    repo: str,
    files: Mapping[str, bytes],
    *,
    base_sha: str,
    message: str,
    signoff: str,
    deleted: Sequence[str] = (),
    call: Caller = direct_call,
) -> str:
    """blobs → tree (on the base tree) → commit with parent = base. No author/committer: Verified."""
    owner, name = _split(repo)
    base_commit = call(
        f"GET commit {base_sha[:12]}", lambda: gh.rest.git.get_commit(owner, name, base_sha)
    ).parsed_data
    entries: list[dict[str, Any]] = []
    for path, content in sorted(files.items()):
        data = {"content": base64.b64encode(content).decode(), "encoding": "base64"}
        # blobs are content-addressed: a retried create cannot duplicate anything
        blob = call(
            f"POST blob {path}", partial(gh.rest.git.create_blob, owner, name, data=data), mutating=True
        )
        entries.append({"path": path, "mode": "100644", "type": "blob", "sha": blob.parsed_data.sha})
    entries += [{"path": p, "mode": "100644", "type": "blob", "sha": None} for p in deleted]
    tree = call(
        "POST tree",
        lambda: gh.rest.git.create_tree(
            owner, name, data={"base_tree": base_commit.tree.sha, "tree": entries}
        ),
        mutating=True,
    ).parsed_data
    if tree.sha == base_commit.tree.sha:
        raise DeliveryError("nothing to commit: the files are identical to the base")
    body = {"message": with_signoff(message, signoff), "tree": tree.sha, "parents": [base_sha]}
    commit = call("POST commit", lambda: gh.rest.git.create_commit(owner, name, data=body), mutating=True)
    return str(commit.parsed_data.sha)


def point_branch(gh: Any, repo: str, branch: str, sha: str, *, call: Caller = direct_call) -> None:
    """Create refs/heads/<branch> or force-move it to `sha` (a rerun replaces the single commit)."""
    owner, name = _split(repo)
    try:
        call(f"GET ref {branch}", lambda: gh.rest.git.get_ref(owner, name, f"heads/{branch}"))
    except REQUEST_ERRORS as exc:
        if _status(exc) != 404:
            raise
        try:
            call(
                f"POST ref {branch}",
                lambda: gh.rest.git.create_ref(owner, name, data={"ref": f"refs/heads/{branch}", "sha": sha}),
                mutating=True,
            )
            return
        except REQUEST_ERRORS as exc2:  # created concurrently (or by a lost retry): update instead
            if _status(exc2) != 422:
                raise
    call(
        f"PATCH ref {branch}",
        lambda: gh.rest.git.update_ref(owner, name, f"heads/{branch}", data={"sha": sha, "force": True}),
        mutating=True,
    )


def refuse_over_pushed_commits(
    gh: Any, repo: str, base: str, branch: str, *, call: Caller = direct_call
) -> None:
    """The bot's branch is ONE commit on the base; more means a person pushed to it (e.g. to the
    early draft PR while the job still ran). Their commits are never force-moved over: the delivery
    fails saying so. An absent branch (or a compare GitHub cannot answer) is no push."""
    owner, name = _split(repo)
    try:
        cmp = call(
            f"GET compare {base}...{branch}",
            lambda: gh.rest.repos.compare_commits(owner, name, f"{base}...{branch}"),
        ).parsed_data
    except REQUEST_ERRORS as exc:
        if _status(exc) in (404, 422):
            return
        raise
    if int(cmp.ahead_by or 0) > 1:
        raise DeliveryError(
            f"someone pushed to `{branch}` while the job ran ({cmp.ahead_by} commits on `{base}`, the bot "
            "makes one): their commits are kept and the bot's commit was not pushed over them; push "
            "again to re-gate that head, or reset the branch to the bot's commit and `/adapt rerun deliver`"
        )


def find_pull(gh: Any, repo: str, head_owner: str, branch: str, *, call: Caller = direct_call) -> Any | None:
    owner, name = _split(repo)
    pulls = call(
        f"GET pulls head={head_owner}:{branch}",
        lambda: gh.rest.pulls.list(owner, name, state="open", head=f"{head_owner}:{branch}", per_page=10),
    ).parsed_data
    return pulls[0] if pulls else None


def set_draft(gh: Any, node_id: str, draft: bool, *, call: Caller = direct_call) -> None:
    """REST cannot change draft state; GraphQL can."""
    mutation = "convertPullRequestToDraft" if draft else "markPullRequestReadyForReview"
    query = (
        f"mutation($id: ID!) {{ {mutation}(input: {{pullRequestId: $id}}) "
        "{ pullRequest { id isDraft } } }"
    )
    call(f"GraphQL {mutation}", lambda: gh.graphql.request(query, {"id": node_id}), mutating=True)


def deliver_pr(
    gh: Any,
    repo: str,
    files_root: Path | Mapping[str, str | bytes],
    *,
    branch: str,
    title: str,
    body: str,
    message: str,
    signoff: str,
    base: str = "main",
    draft: bool = False,
    fork: str | None = None,
    deleted: Sequence[str] = (),
    call: Caller = direct_call,
    base_sha: str | None = None,
) -> PullDelivery:
    """Commit the files (a directory laid out as the repo, or path -> content) on `branch` and open
    or update its PR.

    `draft=True` while the real gate has not passed; a later delivery with `draft=False` marks the
    same PR ready. `fork="owner/name"` pushes the branch to a fork (objects are shared in a fork
    network) and opens the PR from `owner:branch`. `call` is the retry/throttle policy
    (bot.github.GitHubClient.call); the PR create uses it with a marker check, so a create whose
    response was lost is found instead of repeated.
    """
    owner, name = _split(repo)
    head_repo = fork or repo
    head_owner = _split(head_repo)[0]
    files = _file_contents(files_root)
    rels = sorted(files)
    if not rels and not deleted:
        raise DeliveryError("no files to deliver")
    if base_sha is None:  # else: the base commit the files were computed against (rebase_on_base)
        base_sha = base_head(gh, repo, base, call=call)
    sha = create_commit(
        gh, head_repo, files, base_sha=base_sha, message=message, signoff=signoff, deleted=deleted, call=call
    )
    if fork is None:  # (a fork's branch is compared in the fork network: not checked here)
        refuse_over_pushed_commits(gh, repo, base, branch, call=call)
    point_branch(gh, head_repo, branch, sha, call=call)
    body = fit(body, COMMENT_LIMIT)
    existing = find_pull(gh, repo, head_owner, branch, call=call)
    created = existing is None
    if existing is None:
        data = {
            "title": title,
            "head": branch if fork is None else f"{head_owner}:{branch}",
            "base": base,
            "body": body,
            "draft": draft,
            "maintainer_can_modify": fork is not None,
        }
        try:
            pr = call(
                f"POST pull {branch}",
                lambda: gh.rest.pulls.create(owner, name, data=data),
                mutating=True,
                marker_check=lambda: _found_pull(gh, repo, head_owner, branch, call),
            ).parsed_data
        except REQUEST_ERRORS as exc:  # a concurrent delivery opened it first
            if (
                _status(exc) != 422
                or (existing := find_pull(gh, repo, head_owner, branch, call=call)) is None
            ):
                raise
            created = False
    if existing is not None:
        number = existing.number
        pr = call(
            f"PATCH pull {number}",
            lambda: gh.rest.pulls.update(owner, name, number, data={"title": title, "body": body}),
            mutating=True,
        ).parsed_data
    if bool(pr.draft) != draft:
        set_draft(gh, pr.node_id, draft, call=call)
        number = pr.number
        pr = call(f"GET pull {number}", lambda: gh.rest.pulls.get(owner, name, number)).parsed_data
    return PullDelivery(
        number=int(pr.number),
        url=str(pr.html_url),
        sha=sha,
        branch=branch,
        base_sha=base_sha,
        draft=bool(pr.draft),
        created=created,
        files=tuple(sorted([*rels, *deleted])),
    )


def _found_pull(gh: Any, repo: str, head_owner: str, branch: str, call: Caller) -> Any | None:
    """For the create's marker check: the PR a lost create made, as a response-like object."""
    owner, name = _split(repo)
    pr = find_pull(gh, repo, head_owner, branch, call=call)
    if pr is None:
        return None
    number = pr.number
    return call(f"GET pull {number}", lambda: gh.rest.pulls.get(owner, name, number))


def _file_contents(source: Path | Mapping[str, str | bytes]) -> dict[str, bytes]:
    if isinstance(source, Path):
        return {rel: (source / rel).read_bytes() for rel in collect_files(source)} if source.is_dir() else {}
    out: dict[str, bytes] = {}
    for rel, content in source.items():
        parts = rel.split("/")
        if not rel or rel.startswith("/") or ".." in parts or parts[0] == ".git" or "\\" in rel:
            raise DeliveryError(f"{rel!r} is not a safe repository path")
        out[rel] = content.encode() if isinstance(content, str) else bytes(content)
    return out


# ---------------------------------------------------------------------------------------- check runs

CheckStatus = Literal["queued", "in_progress", "completed"]


@dataclass(frozen=True)
class CheckRunSpec:
    name: str
    status: CheckStatus
    conclusion: str | None
    title: str
    summary: str
    actions: tuple[CheckAction, ...] = field(default_factory=tuple)
    details_url: str | None = None

    def __post_init__(self) -> None:
        if len(self.actions) > 3:
            raise ValueError("GitHub shows at most 3 check-run buttons")


def gate_check_runs(
    facts: JobFacts, *, logs_url: str | None = None, running: bool = False
) -> list[CheckRunSpec]:
    """Desired check runs for the two gates (buttons: rerun, cancel while a job can still act)."""
    specs: list[CheckRunSpec] = []
    for gate in facts.gates:
        out = check_run_output(gate, logs_url=logs_url)
        name = "adapt-bot / dummy gate" if gate.weights == "dummy" else "adapt-bot / real gate"
        rerun = RERUN_DUMMY if gate.weights == "dummy" else RERUN_REAL
        if not gate.ran:
            specs.append(CheckRunSpec(name, "in_progress" if running else "queued", None, out["title"],
                                      out["summary"], (CANCEL,), logs_url))  # fmt: skip
            continue
        conclusion = "success" if gate.passed else ("cancelled" if gate.reason == "cancelled" else "failure")
        actions = (rerun,) if gate.passed else (rerun, CANCEL)
        specs.append(
            CheckRunSpec(name, "completed", conclusion, out["title"], out["summary"], actions, logs_url)
        )
    return specs


def check_run_payload(spec: CheckRunSpec, external_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": spec.name,
        "status": spec.status,
        "external_id": external_id,
        "output": {"title": spec.title[:255], "summary": fit(spec.summary, CHECK_RUN_TEXT_LIMIT)},
        "actions": [
            {"label": a.label, "description": a.description, "identifier": a.identifier} for a in spec.actions
        ],
    }
    if spec.details_url:
        data["details_url"] = spec.details_url
    if spec.status == "completed":
        data["conclusion"] = spec.conclusion or "neutral"
    return data


def publish_check_runs(
    gh: Any,
    repo: str,
    head_sha: str,
    specs: Iterable[CheckRunSpec],
    *,
    external_id: str,
    call: Caller = direct_call,
) -> dict[str, int]:
    """Make the head commit's check runs match `specs` (update ours by name, create the missing)."""
    owner, name = _split(repo)

    def ours() -> dict[str, int]:
        listed = call(
            f"GET check-runs {head_sha[:12]}",
            lambda: gh.rest.checks.list_for_ref(owner, name, head_sha, per_page=100),
        ).parsed_data
        found: dict[str, int] = {}
        for run in listed.check_runs:
            if run.external_id == external_id and run.name not in found:
                found[run.name] = int(run.id)
        return found

    existing = ours()
    out: dict[str, int] = {}
    for spec in specs:
        data = check_run_payload(spec, external_id)
        if spec.name in existing:
            run_id = existing[spec.name]
            call(
                f"PATCH check-run {spec.name}",
                partial(gh.rest.checks.update, owner, name, run_id, data=data),
                mutating=True,
            )
        else:
            created = call(
                f"POST check-run {spec.name}",
                partial(gh.rest.checks.create, owner, name, data={**data, "head_sha": head_sha}),
                mutating=True,
                marker_check=partial(found_run, gh, owner, name, head_sha, spec.name, external_id),
            )
            run_id = int(created.parsed_data.id)
        out[spec.name] = run_id
    return out


def found_run(gh: Any, owner: str, name: str, head_sha: str, run_name: str, external_id: str) -> Any | None:
    listed = gh.rest.checks.list_for_ref(owner, name, head_sha, check_name=run_name, per_page=100)
    for run in listed.parsed_data.check_runs:
        if run.external_id == external_id:
            return _Parsed(run)
    return None


@dataclass(frozen=True)
class _Parsed:
    """Response-shaped wrapper for an object found by a marker check."""

    parsed_data: Any


# ------------------------------------------------------------------------- the PR's base branch


def base_head(gh: Any, repo: str, base: str, *, call: Caller = direct_call) -> str:
    owner, name = _split(repo)
    ref = call(f"GET ref {base}", lambda: gh.rest.git.get_ref(owner, name, f"heads/{base}")).parsed_data
    return str(ref.object_.sha)


@dataclass
class BaseContents:
    """The PR's base branch at one commit, read through the contents API (cached per path)."""

    gh: Any
    repo: str
    sha: str
    call: Caller = direct_call
    _cache: dict[str, Any] = field(default_factory=dict)

    def _get(self, path: str) -> Any:
        if path not in self._cache:
            owner, name = _split(self.repo)
            try:
                resp = self.call(
                    f"GET contents {path}",
                    lambda: self.gh.rest.repos.get_content(owner, name, path, ref=self.sha),
                )
                self._cache[path] = resp.json()
            except REQUEST_ERRORS as exc:
                if _status(exc) != 404:
                    raise
                self._cache[path] = None
        return self._cache[path]

    def read(self, path: str) -> str | None:
        doc = self._get(path)
        if not isinstance(doc, dict) or doc.get("type") != "file":
            return None
        return base64.b64decode(doc.get("content") or "").decode("utf-8")

    def listdir(self, path: str) -> list[str] | None:
        doc = self._get(path)
        if not isinstance(doc, list):
            return None
        return [str(e["name"]) for e in doc if isinstance(e, dict) and e.get("type") == "file"]


@dataclass(frozen=True)
class Rebased:
    files: dict[str, str | bytes]
    notes: list[str]
    flavor: str
    nav_file: str


def rebase_on_base(
    files: Mapping[str, str | bytes],
    facts: JobFacts,
    base: BaseContents,
    *,
    hardware: str = "a2",
    nightly_section: str | None = None,
) -> Rebased:
    """Re-decide what the runner decided on its own checkout, against the base branch as it is now.

    - docs flavor (MkDocs nav or Sphinx toctree), nav file and tutorial form (numbered sections,
      version macro): from the base branch's files (runners.artifacts.target.detect_from);
    - the tutorial is re-rendered in that form, and dropped if the base already has that page;
    - the registration is re-applied as one inserted line to the CURRENT base nav file (the
      runner's copy of the whole file is never committed); nothing when the base lists it already;
    - the e2e config is dropped when the base already has one at that path (a maintainer's);
    - the nightly list / model list entries are re-applied to the base's files the same way.
    """
    from runners.artifacts.docs import render_tutorial, tutorial_path
    from runners.artifacts.e2e_config import config_path
    from runners.artifacts.target import (
        MODEL_LIST,
        NIGHTLY_CONFIG,
        TUTORIAL_INDEX,
        TargetRepoError,
        detect_from,
        register_mkdocs,
        register_model_list,
        register_nightly,
        register_toctree,
    )

    label = f"{base.repo}@{base.sha[:12]}"
    try:
        target = detect_from(base.read, base.listdir, label)
    except TargetRepoError as exc:
        raise DeliveryError(f"the PR's base branch: {exc}") from None
    out = dict(files)
    notes: list[str] = []
    for nav in ("mkdocs.yml", "mkdocs.yaml", TUTORIAL_INDEX):
        out.pop(nav, None)  # the runner's copy: re-applied below on the base's current file
    tut_rel = tutorial_path(facts)
    tut_name = tut_rel.rsplit("/", 1)[-1]
    if tut_rel in out:
        if base.read(tut_rel) is not None:
            out.pop(tut_rel)
            notes.append(f"{tut_rel} exists on the base branch; left unchanged")
        else:
            out[tut_rel] = render_tutorial(facts, target)
    if tut_rel in out or base.read(tut_rel) is not None:
        current = base.read(target.nav_file)
        if current is None:
            raise DeliveryError(f"{label}: {target.nav_file} vanished while reading the base branch")
        try:
            register = register_mkdocs if target.flavor == "mkdocs" else register_toctree
            updated = register(current, tut_name)
        except TargetRepoError as exc:
            raise DeliveryError(f"the PR's base branch: {exc}") from None
        if updated != current:
            out[target.nav_file] = updated
        else:
            notes.append(f"{target.nav_file} on the base branch already lists {tut_name}")
    cfg_rel = config_path(facts)
    if cfg_rel in out and base.read(cfg_rel) is not None:
        out.pop(cfg_rel)
        notes.append(f"{cfg_rel} exists on the base branch; the maintainers' baseline is kept")
    if NIGHTLY_CONFIG in out:
        text = base.read(NIGHTLY_CONFIG)
        out.pop(NIGHTLY_CONFIG)
        if text is not None and nightly_section and cfg_rel in out:
            try:
                new = register_nightly(
                    text, facts.names.name, tp=facts.tp, hardware=hardware, section=nightly_section
                )
                if new != text:
                    out[NIGHTLY_CONFIG] = new
            except (TargetRepoError, KeyError, TypeError, ValueError) as exc:
                notes.append(f"{NIGHTLY_CONFIG} on the base branch: {exc}")
    if MODEL_LIST in out:
        text = base.read(MODEL_LIST)
        out.pop(MODEL_LIST)
        if text is not None and facts.names.hub_id:
            try:
                new = register_model_list(text, facts.names.hub_id)
                if new != text:
                    out[MODEL_LIST] = new
            except (TargetRepoError, ValueError) as exc:
                notes.append(f"{MODEL_LIST} on the base branch: {exc}")
    return Rebased(out, notes, target.flavor, target.nav_file)


# ------------------------------------------------------------------------------ control-plane entry


@dataclass(frozen=True)
class DeliveryOutcome:
    pr_number: int
    pr_url: str
    sha: str
    branch: str
    draft: bool
    created: bool
    files: tuple[str, ...]
    check_runs: dict[str, int]
    logs_url: str | None = None

    def as_delivery(self) -> Delivery:
        """What the final comment and the report cite (runners.artifacts.render_final_comment)."""
        return Delivery(
            commit_sha=self.sha,
            branch=self.branch,
            changed_files=self.files,
            pr_url=self.pr_url,
            draft=self.draft,
            logs_url=self.logs_url,
        )


def pr_draft(verdict: Verdict, delivery_config: Any = None) -> bool:
    """The PR is a draft unless the verdict is `validated` (runners.verdict): a PR whose accuracy is
    implausible, whose reference parity was skipped or whose real gate never passed is not ready for
    review, whatever else passed. `delivery.draft_until_real_gate: false` in the repo config opts
    out of drafts altogether (the key keeps its name; it now means "until validated")."""
    if not getattr(delivery_config, "draft_until_real_gate", True):
        return False
    return not verdict.validated


_IDENTITY_ATTR = "_adapt_bot_identity"


def app_signoff(github: Any) -> str:
    """The App's bot identity for the DCO trailer, from GET /app and GET /users/<slug>[bot].

    Cached on the App client (one per control-plane process), not in a module global: a global
    outlives the client it was read through (a new GitHub host, a reset stand-in).
    """
    parent = getattr(github, "parent", None)
    if parent is None:
        raise DeliveryError(
            "no App client to read the bot identity from; set delivery.signoff in the repo config"
        )
    cached = getattr(parent, _IDENTITY_ATTR, None)
    if isinstance(cached, str):
        return cached
    app_gh = parent._gh  # the JWT-authenticated client (GET /app needs App auth)
    slug = str(app_gh.rest.apps.get_authenticated().parsed_data.slug)
    user = github.gh.rest.users.get_by_username(f"{slug}[bot]").json()  # only the id is needed
    identity = bot_signoff(slug, int(user["id"]))
    setattr(parent, _IDENTITY_ATTR, identity)
    return identity


def deliver(
    *,
    job: Any,
    results: Mapping[str, Any],
    files: Mapping[str, str | bytes],
    github: Any,
    config: Any,
    settings: Any,
) -> DeliveryOutcome:
    """Deliver a finished job: one signed-off commit, its PR (draft unless the verdict is validated), and
    the gate check runs on the PR head. Idempotent: a rerun updates the same branch, PR and runs.

    `github` is bot.github.InstallationClient (its `.gh` is the installation githubkit client),
    `config` the repository's RepoConfig, `results` the job's StageResults, `files` path -> text.
    """
    from runners.artifacts import collect, commit_message, pr_body, pr_title

    gh = github.gh
    t = _target(job, github, config, settings)
    options, branch, dconf, signoff, base, fork, logs_url, call = (
        t.options,
        t.branch,
        t.dconf,
        t.signoff,
        t.base,
        t.fork,
        t.logs_url,
        t.call,
    )
    facts = collect(options, results)
    draft = pr_draft(facts.verdict, dconf)
    # the docs registration, tutorial form and e2e location follow the base branch as it is NOW
    base_sha = base_head(gh, job.repo, base, call=call)
    wanted = getattr(options, "artifacts", None)
    rebased = rebase_on_base(
        files,
        facts,
        BaseContents(gh, job.repo, base_sha, call=call),
        hardware=getattr(options, "hardware", "a2"),
        nightly_section=getattr(wanted, "nightly_section", None),
    )
    files = rebased.files
    from runners.candidate import adapter_rationale

    code = code_files(options, results)
    files, code_changes = {**files, **code}, sorted(code)
    paths = sorted(files)
    done = deliver_pr(
        gh,
        job.repo,
        files,
        branch=branch,
        title=pr_title(options, results),
        body=pr_body(
            options,
            results,
            job_id=job.id,
            files=paths,
            code_changes=code_changes,
            code_rationale=adapter_rationale(results),
            report_url=logs_url,
        ),
        message=commit_message(options, results),
        signoff=signoff,
        base=base,
        draft=draft,
        fork=fork,
        call=call,
        base_sha=base_sha,
    )
    runs = publish_check_runs(
        gh, job.repo, done.sha, gate_check_runs(facts, logs_url=logs_url), external_id=job.id, call=call
    )
    return DeliveryOutcome(
        pr_number=done.number,
        pr_url=done.url,
        sha=done.sha,
        branch=done.branch,
        draft=done.draft,
        created=done.created,
        files=done.files,
        check_runs=runs,
        logs_url=logs_url,
    )


def code_files(options: Any, results: Mapping[str, Any]) -> dict[str, bytes]:
    """The code the single commit carries besides the artifacts (deliver and the early draft alike):
    the candidate's minimal diff, computed HERE from git at the pinned SHA (never runner output), and
    the files of the adopted adapter patches, re-checked against the budget together with it.
    CandidateFailed("budget") when they do not fit."""
    from runners.candidate import adapter_files, delivered_files

    code: dict[str, bytes] = {}
    cand = getattr(options, "candidate", None)
    if cand is not None:
        code = delivered_files(cand)
    code.update(adapter_files(results, code))
    return code


@dataclass(frozen=True)
class _Target:
    """Where a job's PR goes, from the job, the repo config and the settings (deliver, open_draft)."""

    options: Any
    branch: str
    dconf: Any
    signoff: str
    base: str
    fork: str | None
    logs_url: str | None
    call: Caller


def _target(job: Any, github: Any, config: Any, settings: Any) -> _Target:
    from runners.artifacts import branch_name, model_names

    options = job.options.model_copy(update={"issue": job.issue})
    dconf = getattr(config, "delivery", None)
    parent = getattr(github, "parent", None)
    call: Caller = getattr(github, "call", None) or (  # the installation's call: its own write throttle
        parent.call if parent is not None and hasattr(parent, "call") else direct_call
    )
    return _Target(
        options=options,
        branch=branch_name(model_names(options), job.issue),
        dconf=dconf,
        signoff=getattr(dconf, "signoff", None) or app_signoff(github),
        base=getattr(dconf, "base_branch", None) or "main",
        fork=getattr(dconf, "fork", None) if getattr(dconf, "mode", "app-commit") == "fork" else None,
        logs_url=job_url(getattr(settings, "public_url", None), job.id),
        call=call,
    )


def drafts_early(config: Any) -> bool:
    """Whether the real gate's pass opens the PR as a draft (`delivery.draft_until_real_gate`, default
    true; false opts out of drafts, and the PR then opens at delivery as before)."""
    return bool(getattr(getattr(config, "delivery", None), "draft_until_real_gate", True))


def open_draft(
    *,
    job: Any,
    results: Mapping[str, Any],
    github: Any,
    config: Any,
    settings: Any,
) -> DeliveryOutcome | None:
    """Open the job's PR as a DRAFT as soon as the real gate passed (the job still runs).

    Its one signed-off commit holds what the control plane can already build from the stored
    results, against the base branch as it is now: the deployment tutorial (rendered from the
    facts so far, in the base's docs form), its docs-navigation entry, and the code the final commit
    carries too (the candidate's minimal diff, adopted adapter patches: code_files, same budget
    check; a budget failure raises CandidateFailed and nothing is committed). The body lists those
    files as the final body does, carries the verdict so far (not validated: accuracy has not
    run) and says the job is still running.
    Delivery later force-moves the same branch to the final commit, updates title and body, and
    marks the PR ready for review only if the verdict is `validated` (deliver_pr + pr_draft).
    Idempotent: an existing PR for the branch is returned as it is, nothing is committed. None when
    there is nothing to commit yet (the base branch has this model's tutorial already and the job
    carries no code): the PR then opens at delivery.
    """
    from runners.artifacts import commit_message, pr_title

    gh = github.gh
    t = _target(job, github, config, settings)
    head_owner = repo_parts(t.fork or job.repo)[0]
    existing = find_pull(gh, job.repo, head_owner, t.branch, call=t.call)
    if existing is not None:
        return DeliveryOutcome(
            pr_number=int(existing.number),
            pr_url=str(existing.html_url),
            sha=str(existing.head.sha),
            branch=t.branch,
            draft=bool(existing.draft),
            created=False,
            files=(),
            check_runs={},
            logs_url=t.logs_url,
        )
    base_sha, files, code = _draft_files(gh, job, t, results)
    if not files:  # e.g. the base has this model's tutorial already: wait for the artifacts
        return None
    done = deliver_pr(
        gh,
        job.repo,
        files,
        branch=t.branch,
        title=pr_title(t.options, results),
        body=_draft_body(job, t, results, sorted(files), code, failed_stage=None),
        message=commit_message(t.options, results),
        signoff=t.signoff,
        base=t.base,
        draft=True,
        fork=t.fork,
        call=t.call,
        base_sha=base_sha,
    )
    return DeliveryOutcome(
        pr_number=done.number,
        pr_url=done.url,
        sha=done.sha,
        branch=done.branch,
        draft=done.draft,
        created=done.created,
        files=done.files,
        check_runs={},
        logs_url=t.logs_url,
    )


def _draft_files(
    gh: Any, job: Any, t: _Target, results: Mapping[str, Any]
) -> tuple[str, dict[str, str | bytes], list[str]]:
    """What the early draft commits: the tutorial from the facts so far, in the base's docs form,
    and its navigation entry (rebase_on_base re-renders and registers it on the base as it is),
    plus the code the final commit will carry too (code_files: the candidate's minimal diff, the
    adopted adapter patches; same budget check), so reviewers see the code from the draft on.
    Returns (base sha, path -> content, the code paths among them)."""
    from runners.artifacts import collect
    from runners.artifacts.docs import tutorial_path

    facts = collect(t.options, results)
    base_sha = base_head(gh, job.repo, t.base, call=t.call)
    rebased = rebase_on_base(
        {tutorial_path(facts): ""},
        facts,
        BaseContents(gh, job.repo, base_sha, call=t.call),
        hardware=getattr(t.options, "hardware", "a2"),
    )
    code = code_files(t.options, results)
    return base_sha, {**rebased.files, **code}, sorted(code)


def _draft_body(
    job: Any,
    t: _Target,
    results: Mapping[str, Any],
    paths: Sequence[str],
    code: Sequence[str],
    *,
    failed_stage: str | None,
) -> str:
    """The PR body with the draft note under its marker (job still running, or ended before delivery);
    the code files are listed and explained as the final body does."""
    from runners.artifacts import pr_body
    from runners.candidate import adapter_rationale
    from runners.render import render

    body = pr_body(
        t.options,
        results,
        job_id=job.id,
        files=paths,
        code_changes=code,
        code_rationale=adapter_rationale(results),
        report_url=t.logs_url,
    )
    marker, _, rest = body.partition("\n")
    note = render("artifacts/pr_draft_note.md.j2", job_url=t.logs_url, failed_stage=failed_stage).strip()
    return fit(f"{marker}\n{note}\n\n{rest}", COMMENT_LIMIT)


def end_draft(*, job: Any, results: Mapping[str, Any], github: Any, config: Any, settings: Any) -> None:
    """A job whose early draft PR exists ended before delivery (a later stage failed): the PR stays
    a draft and its body now carries the final verdict (failed: <stage>: <reason>) and says so."""
    gh = github.gh
    t = _target(job, github, config, settings)
    owner, name = repo_parts(job.repo)
    _base, files, code = _draft_files(gh, job, t, results)
    body = _draft_body(job, t, results, sorted(files), code, failed_stage=job.stage or "?")
    number = int(job.pr_number)
    t.call(
        f"PATCH pull {number}",
        lambda: gh.rest.pulls.update(owner, name, number, data={"body": body}),
        mutating=True,
    )
