"""The public API grows only on purpose: `cas.__all__` is exactly this list."""

from __future__ import annotations

import importlib

import cas

EXPECTED = sorted(
    [
        "AllSourcesFailedError",
        "BaseModelManager",
        "BlobNotFoundError",
        "BlobStore",
        "CachePolicy",
        "DefaultModelManager",
        "Digest",
        "DriftError",
        "FetchRequest",
        "IntegrityError",
        "InvalidNameError",
        "LockTimeoutError",
        "Lockfile",
        "LockfileError",
        "ManifestError",
        "ModelCacheManager",
        "ModelDownloader",
        "ModelEntry",
        "ModelManifest",
        "ModelNotFoundError",
        "ModelValidator",
        "NotFoundError",
        "ProjectNotFoundError",
        "SourceError",
        "StoreFormatError",
        "UsageError",
        "VVStoreError",
        "hash_file",
        "open",
        "parse_ref",
        "path",
        "validate_name",
        "validate_relpath",
        "validate_version",
    ]
)


def test_all_is_the_intended_list() -> None:
    assert sorted(cas.__all__) == EXPECTED
    assert len(cas.__all__) == len(set(cas.__all__))


def test_every_exported_name_is_importable() -> None:
    module = importlib.import_module("cas")
    for name in EXPECTED:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from cas import *", namespace)
    assert set(EXPECTED) <= set(namespace)


def test_exports_are_the_real_objects() -> None:
    from cas.blobs import BlobStore
    from cas.manager import DefaultModelManager
    from cas.manifest import ModelManifest

    assert cas.BlobStore is BlobStore
    assert cas.DefaultModelManager is DefaultModelManager
    assert cas.ModelManifest is ModelManifest
    assert issubclass(cas.DefaultModelManager, cas.BaseModelManager)
