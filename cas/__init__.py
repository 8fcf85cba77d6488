"""vvstore: a content-addressed store for AI model files.

The public API is this list; everything else is internal and may change.
"""

from .blobs import BlobStore
from .digest import Digest, hash_file
from .errors import (
    AllSourcesFailedError,
    BlobNotFoundError,
    DriftError,
    IntegrityError,
    InvalidNameError,
    LockfileError,
    LockTimeoutError,
    ManifestError,
    ModelNotFoundError,
    NotFoundError,
    ProjectNotFoundError,
    SourceError,
    StoreFormatError,
    UsageError,
    VVStoreError,
)
from .manager import BaseModelManager, DefaultModelManager
from .manifest import ModelEntry, ModelManifest
from .names import parse_ref, validate_name, validate_relpath, validate_version

__all__ = [
    "AllSourcesFailedError",
    "BaseModelManager",
    "BlobNotFoundError",
    "BlobStore",
    "DefaultModelManager",
    "Digest",
    "DriftError",
    "IntegrityError",
    "InvalidNameError",
    "LockTimeoutError",
    "LockfileError",
    "ManifestError",
    "ModelEntry",
    "ModelManifest",
    "ModelNotFoundError",
    "NotFoundError",
    "ProjectNotFoundError",
    "SourceError",
    "StoreFormatError",
    "UsageError",
    "VVStoreError",
    "hash_file",
    "parse_ref",
    "validate_name",
    "validate_relpath",
    "validate_version",
]
