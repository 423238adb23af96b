"""The versions that ran, recorded in every stage result (`data["versions"]`).

vLLM, vllm-ascend, torch, torch-npu and transformers are read from the package metadata of the
profile's vLLM environment (its python, `-I`, argv list, nothing imported: `importlib.metadata`
only), CANN from the toolkit's install info when present, the model revision from the job's
pinned revision or the checkout's provenance marker, and the image facts from what the
deployment gives the process (`image_facts`). Unknown values are None, never guessed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PACKAGES = ("vllm", "vllm-ascend", "torch", "torch-npu", "transformers")
_PROBE = (
    "import json, sys, importlib.metadata as m\n"
    "out = {}\n"
    "for d in sys.argv[1:]:\n"
    "    try:\n"
    "        out[d] = m.version(d)\n"
    "    except m.PackageNotFoundError:\n"
    "        out[d] = None\n"
    "print(json.dumps(out))\n"
)
_CANN_INFO = (
    Path("/usr/local/Ascend/ascend-toolkit/latest/version.cfg"),
    Path("/usr/local/Ascend/ascend-toolkit/latest/aarch64-linux/ascend_toolkit_install.info"),
    Path("/usr/local/Ascend/ascend-toolkit/latest/x86_64-linux/ascend_toolkit_install.info"),
)


_CANN_KEYS = ("version", "toolkit_installed_version", "runtime_installed_version")
#: an OCI content digest, the only algorithm registries hand out today
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@functools.lru_cache(maxsize=8)
def package_versions(python: str | None) -> dict[str, str | None]:
    """Versions in the environment of `python` (None: unknown environment → all None)."""
    if not python or not Path(python).exists():
        return dict.fromkeys(PACKAGES)
    try:
        proc = subprocess.run(
            [python, "-I", "-c", _PROBE, *PACKAGES], capture_output=True, text=True, timeout=30, check=False
        )
        doc = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        doc = {}
    return {p: (doc.get(p) if isinstance(doc.get(p), str) else None) for p in PACKAGES}


def cann_version() -> str | None:
    for path in _CANN_INFO:
        try:
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip().lower() in (
                    "version",
                    "toolkit_installed_version",
                    "runtime_installed_version",
                ):
                    return value.strip().strip('"') or None
        except OSError:
            continue
    return None


def _digest_of(ref: str | None) -> str | None:
    """The digest a reference pins (`name[:tag]@sha256:...`); a tag alone pins nothing."""
    if not ref or "@" not in ref:
        return None
    digest = ref.rsplit("@", 1)[1]
    return digest if _DIGEST.fullmatch(digest) else None


def image_facts(env: Mapping[str, str] = os.environ) -> dict[str, str | None]:
    """What the deployment says this process runs in; a container cannot learn its own digest.

    - `image`: the reference the pod was started from (deploy/k8s/runner-*.yaml copies the
      container's `image:` into ADAPT_BOT_IMAGE), `image_digest` the digest it pins, or an
      explicit ADAPT_BOT_IMAGE_DIGEST when the reference pins none (a tag is mutable: no digest);
    - `base_image`: what the image was built FROM, `adapt_bot_revision`: the source revision it
      was built from (deploy/Dockerfile.runner / Dockerfile.cpu-runner bake both in as ENV).
    Empty or malformed values are None.
    """
    image = env.get("ADAPT_BOT_IMAGE") or None
    explicit = env.get("ADAPT_BOT_IMAGE_DIGEST") or None
    digest = _digest_of(image) or (explicit if explicit and _DIGEST.fullmatch(explicit) else None)
    return {
        "image": image,
        "image_digest": digest,
        "base_image": env.get("ADAPT_BOT_BASE_IMAGE") or None,
        "adapt_bot_revision": env.get("ADAPT_BOT_REVISION") or None,
    }


def model_revision(ctx: Any) -> str | None:
    rev = getattr(ctx.options, "revision", None)
    if rev:
        return str(rev)
    from runners.model_ref import read_provenance

    mark = read_provenance(Path(ctx.model_path))
    if mark is not None and mark.revision:
        return mark.revision
    parts = Path(ctx.model_path).parts  # <cache>/models--org--name/snapshots/<sha>
    if len(parts) >= 2 and parts[-2] == "snapshots" and len(parts[-1]) == 40:
        return parts[-1]
    return None


def job_versions(ctx: Any) -> dict[str, Any]:
    """What ran for this stage; never raises (a probe failure gives None values)."""
    from runners.stages.analyze import vllm_python_of

    try:
        python = vllm_python_of(ctx.profile) if ctx.profile is not None else None
    except Exception:
        python = None
    out: dict[str, Any] = dict(package_versions(str(python) if python else None))
    out["cann"] = cann_version()
    out.update(image_facts())
    out["model_revision"] = model_revision(ctx)
    out["profile"] = getattr(ctx.profile, "name", None)
    return out
