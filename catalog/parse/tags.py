"""Pure parsing of an image URI, its tag and its labels into catalog fields."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from catalog.parse.uri import ImageRef, parse_uri
from catalog.parse.versions import major_minor, parse_version

__all__ = [
    "KNOWN_FRAMEWORKS", "LIBRARIES", "ImageRef", "ParsedImage", "TagInfo",
    "canonical_framework", "clear_caches", "parse_image", "parse_tag", "parse_uri",
]  # fmt: skip


_CANONICAL = (
    "DeepRec", "DeepSpeed", "Megatron-LM", "ModelScope", "Nemo", "OneFlow", "PyTorch",
    "TensorFlow", "Transformers", "XGBoost", "vLLM", "SGLang", "TensorRT-LLM", "Triton", "JAX",
    "PaddlePaddle", "MXNet", "EasyRec", "TorchEasyRec", "Ray", "Diffusers", "ChatLearn",
    "ComfyUI", "Python", "IsaacLab", "IsaacSim", "HybridBackend", "EasyAnimate",
    "TransformerEngine", "NCCL", "NGC", "Blade", "EasyCV", "cuDNN",
)  # fmt: skip
KNOWN_FRAMEWORKS: dict[str, str] = {name.lower(): name for name in _CANONICAL} | {
    "torch": "PyTorch", "pt": "PyTorch", "tf": "TensorFlow", "paitf": "TensorFlow",
    "nvtf": "TensorFlow", "megatron": "Megatron-LM", "megatron_lm": "Megatron-LM",
    "tensorrt_llm": "TensorRT-LLM", "trtllm": "TensorRT-LLM", "tritonserver": "Triton",
    "paddle": "PaddlePaddle", "tzrec": "TorchEasyRec", "te": "TransformerEngine",
    "transformer-engine": "TransformerEngine", "transformer_engine": "TransformerEngine",
}  # fmt: skip
# tzrec is TorchEasyRec's package name; nvtf is NVIDIA's TensorFlow build, as paitf is PAI's.

# PyTorch and TensorFlow tags spell versions without dots (torch113, tf212); DeepRec's 2204
# is a release number, so other frameworks keep their digits as written.
_COMPACT_FRAMEWORKS = {"PyTorch", "TensorFlow"}
# Libraries a tag lists beside the framework: never the main framework of a generic repository.
LIBRARIES = frozenset({"cuDNN", "NCCL", "NGC", "TransformerEngine", "Blade"})
_REPO_QUALIFIERS = {
    "pai", "lingjun", "xpu", "ppu", "gpu", "cpu", "training", "inference", "develop", "developer",
    "devel", "dev", "nightly",
}  # fmt: skip
# "llm" too: llm-inference tags name the engine (vllm-0.2.6), so the repository is generic.
_GENERIC_REPOS = {"training", "inference", "develop", "developer", "devel", "base", "llm"}
_REPO_SUFFIXES = {
    "-training": "training", "-inference": "inference", "-developer": "develop",
    "-develop": "develop", "-devel": "develop",
}  # fmt: skip
_ACCELERATORS = {"gpu": "GPU", "gpus": "GPU", "cpu": "CPU", "ppu": "PPU", "xpu": "XPU"}
_LABEL_SCOPES = {
    "system.supported.dlc": "training", "system.supported.eas": "inference",
    "system.supported.dsw": "develop",
}  # fmt: skip

_TOKEN_RE = re.compile(r"manylinux_\d+_\d+|[^\s_\-]+", re.IGNORECASE)
_OS_RE = re.compile(
    r"(?P<ubuntu>un?buntu)(?P<uv>\d\d\.?\d\d)?"
    r"|(?P<name>centos|alinux|alios|debian|anolis|rocky)\d+(?:\.\d+)*|manylinux(?:_\d+_\d+|\d+)"
)
_HASH_RE = re.compile(r"(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,}")
_FIRST_VERSION_RE = re.compile(r"[vr]?\d+(?:\.\d+)*(?:[a-z][a-z0-9.]*)?")
_LATER_VERSION_RE = re.compile(r"\d+(?:\.\d+)+(?:[a-z][a-z0-9.]*)?")
_PRE_WORD_RE = re.compile(r"(?:rc|alpha|beta|preview|pre)\d*|[ab]\d+|nightly")  # 2.3-nightly too
_UNKNOWN_COMPONENT_RE = re.compile(r"([a-z]{3,})(\d+(?:\.\d+)+)")
_LEADING_VERSION_RE = re.compile(r"[vV]?\d")
_MAJOR_MINOR_RE = re.compile(r"(\d+)(?:\.(\d+))?")
_FOLLOWER_VERSION_RE = re.compile(r"v?" + _LATER_VERSION_RE.pattern)  # the 2.1 of pytorch-v2.1
_ALIASES = sorted((a for a in KNOWN_FRAMEWORKS if a.isalpha()), key=len, reverse=True)
_GLUED_RE = re.compile(rf"({'|'.join(_ALIASES)})(\d+(?:\.\d+)*)")
_GLUED_REST_RE = re.compile(r"[a-z0-9.]*")
_DASHED_ENDS = {name.rpartition("-")[2] for name in KNOWN_FRAMEWORKS if "-" in name}  # lm, llm


@dataclass(frozen=True)
class TagInfo:
    """What a tag says on its own, given the main framework when the caller knows it."""

    framework: str | None
    version: str | None
    accelerator: str | None  # an explicit tag token only; see ``gpu_implied``
    gpu_implied: bool  # a cuda or cudnn token
    python_version: str | None
    cuda_version: str | None
    os_version: str | None
    components: tuple[tuple[str, str | None], ...]
    build_suffix: str | None


@dataclass(frozen=True)
class ParsedImage:
    """Every catalog field read from one image's URI and labels."""

    host: str | None
    namespace: str | None
    repository: str | None
    tag: str | None
    digest: str | None
    framework: str | None
    framework_version: str | None
    accelerator: str | None
    python_version: str | None
    cuda_version: str | None
    os_version: str | None
    components: tuple[tuple[str, str | None], ...]
    build_suffix: str | None
    scopes: tuple[str, ...]
    scope_inferred: bool
    official: bool
    parse_status: str
    parse_reason: str | None


def canonical_framework(name: str) -> str:
    """The canonical spelling of a framework name; unknown names come back stripped."""
    stripped = name.strip()
    return KNOWN_FRAMEWORKS.get(stripped.lower(), stripped)


def _tokenize(tag: str) -> list[str]:
    tokens = _TOKEN_RE.findall(tag)
    merged: list[str] = []
    for token in tokens:
        # Names with a dash (tensorrt-llm) were split by the tokenizer; glue them back.
        if (
            merged
            and token.lower() in _DASHED_ENDS
            and f"{merged[-1]}-{token}".lower() in KNOWN_FRAMEWORKS
        ):
            merged[-1] = f"{merged[-1]}-{token}"
        else:
            merged.append(token)
    return merged


def _compact_version(framework: str, version: str) -> str:
    if framework not in _COMPACT_FRAMEWORKS or not version.isdigit() or len(version) < 2:
        return version
    major, rest = version[0], version[1:]
    if rest.startswith("0") and len(rest) > 1:
        return f"{major}.0.{rest[1:]}"
    return f"{major}.{rest}"


def _glued(token: str) -> tuple[list[tuple[str, str]], str | None] | None:
    """``pytorch2.3.0tensorflow2.16.1`` -> two components; ``tf2.12gpu`` -> one plus GPU."""
    pieces: list[tuple[str, str]] = []
    pos = 0
    while pos < len(token):
        match = _GLUED_RE.match(token, pos)
        if match is None:
            break
        name = KNOWN_FRAMEWORKS[match.group(1)]
        pieces.append((name, _compact_version(name, match.group(2))))
        pos = match.end()
    rest = token[pos:]
    if not pieces or not _GLUED_REST_RE.fullmatch(rest):
        return None
    if rest in _ACCELERATORS:
        return pieces, _ACCELERATORS[rest]
    name, version = pieces[-1]
    pieces[-1] = (name, version + rest)  # a build letter glued on: deeprec2204u1
    return pieces, None


@lru_cache(maxsize=65536)  # tags are often unique, but made of the same few hundred tokens
def _classify(
    raw: str, first: bool, last: bool
) -> tuple[str, str, tuple[tuple[str, str | None], ...]]:
    """What one tag token is, whether it comes first or last: its kind, the text that kind reads
    ("" when none) and, for kind "components", the components it names."""
    token = raw.lower()
    if not raw.isascii():
        return "build", "", ()
    if match := _OS_RE.fullmatch(token):
        if not match.group("ubuntu"):
            return "os", token, ()
        digits = (match.group("uv") or "").replace(".", "")
        return "os", f"ubuntu{digits[:2]}.{digits[2:]}" if digits else "ubuntu", ()
    if token in _ACCELERATORS:
        return "accelerator", _ACCELERATORS[token], ()
    if python := major_minor(token, "python", prefixed=True):
        return "python", python, ()
    if cuda := major_minor(token, "cuda", prefixed=True):
        return "cuda", cuda, ()
    if _HASH_RE.fullmatch(token) or (
        token.isdigit() and (len(token) >= 6 or (len(token) == 4 and last))
    ):
        return "build", "", ()  # a git hash, a unix time or a date
    if (first and _FIRST_VERSION_RE.fullmatch(token)) or _LATER_VERSION_RE.fullmatch(token):
        return "version", raw[1:] if token[0] in "vr" else raw, ()
    if _PRE_WORD_RE.fullmatch(token):
        return "prerelease", "", ()
    if glued := _glued(token):
        return "components", glued[1] or "", tuple(glued[0])  # tf2.12gpu: the text is GPU
    if token in KNOWN_FRAMEWORKS:
        return "framework", KNOWN_FRAMEWORKS[token], ()
    if match := _UNKNOWN_COMPONENT_RE.fullmatch(token):
        return "components", "", ((match.group(1), match.group(2)),)
    return "build", "", ()


@lru_cache(maxsize=65536)  # the same tags recur across regions and runs
def parse_tag(tag: str, framework: str | None = None) -> TagInfo:
    """Classify each token of ``tag``; ``framework`` is the main one when already known."""
    raw_tokens = _tokenize(tag or "")
    firsts: dict[str, str] = {}  # the os, accelerator, python and cuda: the first token wins
    versions: list[tuple[int, str]] = []
    prereleases: list[tuple[int, str]] = []
    components: list[tuple[int, str, str | None]] = []
    build: list[tuple[int, str]] = []
    skip = False
    for pos, raw in enumerate(raw_tokens):
        if skip:
            skip = False
            continue
        kind, text, named = _classify(raw, pos == 0, pos == len(raw_tokens) - 1)
        if kind in ("os", "accelerator", "python", "cuda"):
            firsts.setdefault(kind, text)
        elif kind == "version":
            versions.append((pos, text))
        elif kind == "prerelease":
            prereleases.append((pos, raw))
        elif kind == "components":
            components.extend((pos, name, version) for name, version in named)
            if text:  # tf2.12gpu
                firsts.setdefault("accelerator", text)
        elif kind == "framework":
            follower = raw_tokens[pos + 1].lower() if pos + 1 < len(raw_tokens) else ""
            skip = bool(_FOLLOWER_VERSION_RE.fullmatch(follower))
            version = raw_tokens[pos + 1].lstrip("vV") if skip else None
            components.append((pos, text, version))
        else:
            build.append((pos, raw))
    main = canonical_framework(framework) if framework else None
    if main is None:
        known = (c[1] for c in components if c[1].lower() in KNOWN_FRAMEWORKS)
        main = next((name for name in known if name not in LIBRARIES), None)
    main_key = main.lower() if main else None
    version = next((c[2] for c in components if c[2] and c[1].lower() == main_key), None)
    version_pos = None
    if version is None and versions:
        version_pos, version = versions.pop(0)
    build.extend(versions)
    if version_pos is not None and version is not None and version.replace(".", "").isdigit():
        after = version_pos + 1
        dev_pos = next((p for p, text in build if p == after and text.lower() == "dev"), None)
        if dev_pos is not None:
            version += "dev"  # 2.12.0-dev is a prerelease; a dev token elsewhere is a flavour
            build = [(p, text) for p, text in build if p != dev_pos]
    parsed = parse_version(version)
    if version is not None and prereleases and parsed is not None and not parsed.is_prerelease:
        word = prereleases.pop(0)[1]  # 0.9-cpu-rc2 is 0.9rc2; 2.3.0-nightly stays so
        version += ("-" if word.lower() == "nightly" else "") + word
    build.extend(prereleases)
    seen = {main.lower()} if main else set()
    kept: list[tuple[str, str | None]] = []
    for _, name, comp_version in components:
        if name.lower() not in seen:
            seen.add(name.lower())
            kept.append((name, comp_version))
    return TagInfo(
        framework=main,
        version=version,
        accelerator=firsts.get("accelerator"),
        gpu_implied="cuda" in firsts or any(c[1] == "cuDNN" for c in components),
        python_version=firsts.get("python"),
        cuda_version=firsts.get("cuda"),
        os_version=firsts.get("os"),
        components=tuple(kept),
        build_suffix="-".join([text for _, text in sorted(build)]) or None,
    )


def clear_caches() -> None:
    """Forget the tags read so far: a reader of many unique tags keeps its memory bounded."""
    parse_tag.cache_clear()
    _classify.cache_clear()


@lru_cache(maxsize=4096)  # a few hundred repositories hold every image
def _repository(repository: str) -> tuple[str | None, bool, str, tuple[str, ...]]:
    """What a repository name says: the framework it gives, whether the name is too generic to
    say, its chip word ("" for none) and the scope its suffix names."""
    name = repository.lower()
    name_words = name.split("-")
    chip = next((_ACCELERATORS[w] for w in ("xpu", "ppu", "gpu", "cpu") if w in name_words), "")
    scopes: tuple[str, ...] = ()
    for suffix, scope in _REPO_SUFFIXES.items():
        if name.endswith(suffix) or name == suffix[1:]:
            scopes = (scope,)
            break
    if not repository:
        return None, True, chip, scopes
    stripped = name
    for suffix in _REPO_SUFFIXES:
        if stripped.endswith(suffix):
            stripped = stripped[: -len(suffix)]
            break
    if stripped in KNOWN_FRAMEWORKS:
        return KNOWN_FRAMEWORKS[stripped], False, chip, scopes
    words = stripped.split("-")
    known = [word for word in words if word in KNOWN_FRAMEWORKS]
    if len(known) == 1 and all(w in KNOWN_FRAMEWORKS or w in _REPO_QUALIFIERS for w in words):
        return KNOWN_FRAMEWORKS[known[0]], False, chip, scopes
    return stripped, not stripped or stripped in _GENERIC_REPOS, chip, scopes


def _read_labels(
    labels: Mapping[str, str], default: str | None
) -> tuple[dict[str, str], list[tuple[str, str | None]]]:
    """Labels by stripped lower-case key, and the frameworks they name with their versions."""
    low: dict[str, str] = {}
    found: dict[str, tuple[str, str | None]] = {}
    for raw_key, raw_value in labels.items():
        key, value = str(raw_key).strip(), str(raw_value or "").strip()
        lowered = key.lower()
        low[lowered] = value  # a repeated key keeps its last value
        if lowered.startswith("system.framework."):
            name, version = key[len("system.framework.") :].strip(), value
        elif lowered == "system.framework":
            # "XGBoost 1.6.0": the version is the last word, when it looks like one.
            head, _, tail = value.rpartition(" ")
            looks_like_version = bool(_LEADING_VERSION_RE.match(tail))
            if not head and looks_like_version:  # "2.3.0" alone: the repository's framework
                name, version = default or "", tail
            else:
                name, version = (head, tail) if head and looks_like_version else (value, "")
        else:
            continue
        name = canonical_framework(name)
        if name:
            previous = found.get(name.lower(), (name, None))
            found[name.lower()] = (previous[0], version or previous[1])
    return low, list(found.values())


@lru_cache(maxsize=4096)  # label values repeat across images
def _major_minor(value: str, *, cuda: bool = False, py: bool = False) -> str | None:
    """A label's "12.1.0", "cu121", "py310" or "Python 3.10" as "12.1" or "3.10"."""
    if (cuda or py) and (found := major_minor(value, "cuda" if cuda else "python")):
        return found
    match = _MAJOR_MINOR_RE.search(value)
    if match is None:
        return value or None
    return ".".join(part for part in match.groups() if part)


def _merge_components(
    tag_components: tuple[tuple[str, str | None], ...],
    label_components: list[tuple[str, str | None]],
) -> tuple[tuple[str, str | None], ...]:
    if not label_components:
        return tag_components  # parse_tag gives one per name already
    merged = {name.lower(): (name, version) for name, version in tag_components}
    for name, version in label_components:
        old = merged.get(name.lower(), (name, None))
        merged[name.lower()] = (old[0], version or old[1])
    return tuple(merged.values())


def _label_fields(low: Mapping[str, str]) -> tuple[str, str | None, str | None, str]:
    """Accelerator, python, cuda and os as the labels give them ("" or None when they don't)."""
    python = low.get("system.pythonversion") or low.get("system.language.python", "")
    cuda = low.get("system.dsw.cudaversion") or low.get("system.cudaversion", "")
    os_name = low.get("system.dsw.os", "")
    os_text = os_name + low.get("system.dsw.osversion", "") if os_name else low.get("system.os", "")
    return (
        low.get("system.chiptype", "").upper(),
        _major_minor(python, py=True),
        _major_minor(cuda, cuda=True),
        os_text.lower().replace(" ", ""),
    )


def parse_image(uri: str | None, labels: Mapping[str, str] | None = None) -> ParsedImage:
    """Read every catalog field from a URI and its labels (labels win); never raises."""
    ref = parse_uri(uri if isinstance(uri, str) else "")
    repository = ref.repository or ""
    repo_framework, generic, repo_chip, repo_scope = _repository(repository)
    low, label_frameworks = _read_labels(labels or {}, None if generic else repo_framework)
    main_label: tuple[str, str | None] | None = None
    if label_frameworks:
        wanted = (repo_framework or "").lower()
        matching = [f for f in label_frameworks if f[0].lower() == wanted]
        main_label = (matching or label_frameworks)[0]
        label_frameworks.remove(main_label)
    hint = main_label[0] if main_label else (None if generic else repo_framework)
    tag = parse_tag(ref.tag or "", hint)
    # A generic repository whose tag names no framework either keeps its own name.
    framework = tag.framework or repo_framework or None
    version = (main_label[1] if main_label else None) or tag.version

    chip, python, cuda, os_version = _label_fields(low)
    gpu = "GPU" if tag.gpu_implied or cuda else None
    python = python or tag.python_version
    if framework == "Python" and python is None and version:
        python = _major_minor(version)
    label_scopes = [s for k, s in _LABEL_SCOPES.items() if low.get(k, "").lower() == "true"]
    # Any scope label, even "false", means the labels speak; the repository name is a fallback.
    repo_scopes = repo_scope if low.keys().isdisjoint(_LABEL_SCOPES) else ()

    if ref.error is not None:
        status, reason = "unrecognized", ref.error
    elif framework is None or version is None:
        what = "framework" if framework is None else "framework version"
        where = f"in tag {ref.tag!r}" if ref.tag else "(the URI has no tag)"
        status, reason = "partial", f"no {what} {where}"
    else:
        status, reason = "ok", None
    return ParsedImage(
        host=ref.host,
        namespace=ref.namespace,
        repository=ref.repository,
        tag=ref.tag,
        digest=ref.digest,
        framework=framework,
        framework_version=version,
        # The label, an explicit tag token, a repository word (training-xpu-pytorch), then cuda.
        accelerator=chip or tag.accelerator or repo_chip or gpu,
        python_version=python,
        cuda_version=cuda or tag.cuda_version,
        os_version=os_version or tag.os_version,
        components=_merge_components(tag.components, label_frameworks),
        build_suffix=tag.build_suffix,
        scopes=tuple(sorted(label_scopes or repo_scopes)),
        scope_inferred=bool(repo_scopes),
        official=low.get("system.official", "").lower() == "true",
        parse_status=status,
        parse_reason=reason,
    )
