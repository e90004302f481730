"""Archive targets, chosen by URL: see :func:`filmflow.archive.base.open_archive`."""

from filmflow.archive.base import Archive, StoreReceipt, open_archive

__all__ = ["Archive", "StoreReceipt", "open_archive"]
