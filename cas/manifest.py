"""The manifest (`vvstore.yaml` or `vvstore.json`): schema, I/O, search and query.

People write it; `vvstore add` and `lock` update it. Decoding is strict (unknown fields are
refused) and every error names the file and the field path, e.g. `$.models[2].digest`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from packaging.version import InvalidVersion, Version

from .atomic import atomic_write
from .errors import (
    InvalidNameError,
    ManifestError,
    ModelNotFoundError,
    ProjectNotFoundError,
    UsageError,
)
from .names import validate_name, validate_relpath, validate_version
from .tree import DigestStr

MANIFEST_NAMES = ("vvstore.yaml", "vvstore.json")
# libyaml's safe loader where PyYAML was built with it: ~7x faster on a 1,000-model manifest
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]


class ModelEntry(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One model version a project wants."""

    name: str
    version: str
    format: str | None = None
    kind: Literal["file", "tree"] = "file"
    file: str | None = None  # a single-file model's file name, so `name@v/<file>` resolves
    sources: list[str] = msgspec.field(default_factory=list)
    digest: DigestStr | None = None
    size: NonNegative | None = None
    tags: list[Tag] = msgspec.field(default_factory=list)
    description: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class Policy(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Cache policy for gc (see `vvstore gc`)."""

    max_size: str | NonNegative | None = None
    ttl: str | None = None
    grace: str | None = None
    auto: bool = False


class Manifest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The whole manifest document."""

    models: list[ModelEntry] = msgspec.field(default_factory=list)
    remotes: dict[str, str] = msgspec.field(default_factory=dict)
    policy: Policy | None = None
    storage: dict[str, dict[str, Any]] = msgspec.field(
        default_factory=dict
    )  # fsspec options by scheme


def _field_error(file: str, e: msgspec.ValidationError) -> ManifestError:
    text = str(e)
    problem, sep, where = text.rpartition(" - at `")
    if not sep:
        return ManifestError(file, None, text)
    where = where.rstrip("`")
    unknown = re.fullmatch(r"Object contains unknown field `(.+)`", problem)
    if unknown:  # msgspec names the object; name the field itself
        where = f"{where}.{unknown.group(1)}"
        problem = "unknown field"
    hint = None
    if "Expected `str`, got `float`" in problem or "Expected `str`, got `int`" in problem:
        hint = 'quote it, e.g. version: "1.10", so YAML keeps it as written'
    return ManifestError(file, where, problem, hint=hint)


def decode_manifest(data: bytes, file: str) -> Manifest:
    """Parse and validate manifest bytes; `file` names it in errors."""
    try:
        if file.endswith(".json"):
            manifest = msgspec.json.decode(data, type=Manifest)
        else:
            raw = yaml.load(data, Loader=_SAFE_LOADER) if data.strip() else {}
            if raw is None:
                raw = {}
            manifest = msgspec.convert(raw, type=Manifest)
    except msgspec.ValidationError as e:
        raise _field_error(file, e) from None
    except yaml.YAMLError as e:
        raise ManifestError(file, _yaml_where(e), f"not valid YAML: {_yaml_problem(e)}") from None
    except msgspec.DecodeError as e:
        raise ManifestError(file, None, f"not valid JSON: {e}") from None
    _check_names(manifest, file)
    return manifest


def _yaml_where(e: yaml.YAMLError) -> str | None:
    mark = getattr(e, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else None


def _yaml_problem(e: yaml.YAMLError) -> str:
    return " ".join(str(getattr(e, "problem", None) or e).split())


SECRET_OPTION = re.compile(r"(secret|password|passwd|token|key$|^key|credential|session)", re.I)
SAFE_OPTIONS = {"endpoint_url", "client_kwargs", "config_kwargs", "anon", "region_name", "endpoint"}


def _check_storage(manifest: Manifest, file: str) -> None:
    for scheme, opts in manifest.storage.items():
        _check_options(opts, f"$.storage.{scheme}", file)


def _check_options(opts: Any, at: str, file: str) -> None:
    """Refuse anything that looks like a credential, at any depth (client_kwargs, headers)."""
    if not isinstance(opts, dict):
        return
    for key, value in opts.items():
        name = str(key)
        if name.lower() == "authorization" or (
            name not in SAFE_OPTIONS and SECRET_OPTION.search(name)
        ):
            raise ManifestError(
                file,
                f"{at}.{name}",
                "credentials do not belong in the manifest",
                hint="set them in the environment or the backend's own config "
                "(e.g. AWS_*, HF_TOKEN)",
            )
        _check_options(value, f"{at}.{name}", file)


def _check_policy(manifest: Manifest, file: str) -> None:
    from .units import parse_age, parse_size

    p = manifest.policy
    if p is None:
        return
    for key, value, parse in (
        ("max_size", p.max_size, parse_size),
        ("ttl", p.ttl, parse_age),
        ("grace", p.grace, parse_age),
    ):
        if value is not None:
            try:
                parse(value)  # type: ignore[operator]
            except UsageError as e:
                raise ManifestError(file, f"$.policy.{key}", e.message) from None


def _check_names(manifest: Manifest, file: str) -> None:
    _check_storage(manifest, file)
    _check_policy(manifest, file)
    seen: set[tuple[str, str]] = set()
    for i, m in enumerate(manifest.models):
        for field, check in (("name", validate_name), ("version", validate_version)):
            try:
                check(getattr(m, field))
            except InvalidNameError as e:
                raise ManifestError(file, f"$.models[{i}].{field}", e.message) from None
        if m.file is not None:
            try:
                validate_relpath(m.file)
            except InvalidNameError as e:
                raise ManifestError(file, f"$.models[{i}].file", e.message) from None
        if (m.name, m.version) in seen:
            raise ManifestError(file, f"$.models[{i}]", f"{m.ref} is listed twice")
        seen.add((m.name, m.version))


def encode_manifest(manifest: Manifest, file: str) -> bytes:
    """Stable, readable bytes: struct field order, block style, nothing that defaults."""
    if file.endswith(".json"):
        return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"
    doc = msgspec.to_builtins(manifest)
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100).encode()


def version_key(version: str) -> tuple[int, Version | str]:
    """Order versions by PEP 440 where they parse, after those that do not."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def find_manifest(start: str | os.PathLike[str]) -> Path:
    """The nearest manifest in `start` or a parent directory."""
    here = Path(start).absolute()
    for d in (here, *here.parents):
        for name in MANIFEST_NAMES:
            if (d / name).is_file():
                return d / name
    raise ProjectNotFoundError(
        f"no vvstore.yaml in {here} or any parent", hint="run `vvstore init` or pass -C DIR"
    )


class ModelManifest:
    """A project's manifest file, loaded and kept in memory; `save()` writes it atomically."""

    def __init__(self, path: str | os.PathLike[str], manifest: Manifest | None = None) -> None:
        self.path = Path(path).absolute()
        self.data = manifest if manifest is not None else Manifest()

    @classmethod
    def load_manifest(cls, path: str | os.PathLike[str]) -> ModelManifest:
        """Load and validate a manifest file (a directory means its manifest)."""
        p = Path(path)
        if p.is_dir():
            p = find_manifest(p)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise ProjectNotFoundError(f"no manifest at {p}", hint="run `vvstore init`") from None
        return cls(p, decode_manifest(data, str(p)))

    @property
    def project_dir(self) -> Path:
        return self.path.parent

    def save(self) -> None:
        """Write atomically; unchanged content leaves the file untouched."""
        data = encode_manifest(self.data, str(self.path))
        try:
            if self.path.read_bytes() == data:
                return
        except FileNotFoundError:
            pass
        atomic_write(self.path, data)

    def list_all_models(self) -> list[ModelEntry]:
        """Every model entry, in file order."""
        return list(self.data.models)

    def names(self) -> set[str]:
        return {m.name for m in self.data.models}

    def get_model_info(self, name: str, version: str | None = None) -> ModelEntry:
        """The entry for `name@version`; without a version, the highest listed."""
        matches = [m for m in self.data.models if m.name == name]
        if version is not None:
            matches = [m for m in matches if m.version == version]
        if not matches:
            what = f"{name}@{version}" if version else name
            raise ModelNotFoundError(
                f"no model {what} in {self.path}", hint="see `vvstore ls`, or `vvstore add` it"
            )
        return max(matches, key=lambda m: version_key(m.version))

    def update_manifest(self, entry: ModelEntry, *, save: bool = True) -> ModelEntry | None:
        """Add `entry`, or replace the one with its name and version; returns the old one."""
        validate_name(entry.name)
        validate_version(entry.version)
        models = self.data.models
        for i, m in enumerate(models):
            if m.name == entry.name and m.version == entry.version:
                models[i] = entry
                break
        else:
            m = None
            models.append(entry)
        if save:
            self.save()
        return m

    def remove_model(self, name: str, version: str | None = None) -> list[ModelEntry]:
        """Drop `name@version` (every version when None); returns what was removed."""
        gone = [m for m in self.data.models if m.name == name and version in (None, m.version)]
        if not gone:
            self.get_model_info(name, version)  # raises the not-found error
        self.data.models = [m for m in self.data.models if m not in gone]
        self.save()
        return gone

    def search(
        self, query: str = "", *, tags: Iterable[str] = (), format: str | None = None
    ) -> list[ModelEntry]:
        """Models whose name, version, description or tags contain `query` (any case), having
        every tag in `tags` and, when given, that format."""
        q = query.lower()
        want = set(tags)
        found = []
        for m in self.data.models:
            text = " ".join([m.name, m.version, m.description or "", *m.tags]).lower()
            if q in text and want <= set(m.tags) and format in (None, m.format):
                found.append(m)
        return found
