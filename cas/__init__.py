"""vvstore: a content-addressed store for AI model files.

The public API is this list; everything else is internal and may change.
"""

from .api import open, path
from .blobs import BlobStore
from .cache import ModelCacheManager
from .digest import Digest, hash_file
from .download import FetchRequest, ModelDownloader
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
from .lockfile import Lockfile
from .manager import BaseModelManager, DefaultModelManager
from .manifest import ModelEntry, ModelManifest
from .names import parse_ref, validate_name, validate_relpath, validate_version
from .policy import CachePolicy
from .validate import ModelValidator

__all__ = [
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
