"""Shared helpers of the dataset loaders."""

from __future__ import annotations

import os

__all__ = ["get_data_home"]

#: Environment variable naming the folder that holds skmeta's data sets.
DATA_HOME_ENV = "SKMETA_DATA"


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> str:
    """Return the path of the skmeta data folder.

    The data folder holds the files of the data sets, one sub-folder per
    data set (for example ``<data_home>/omniglot/``). It is chosen, in this
    order, from

    1. the ``data_home`` argument, when given;
    2. the ``SKMETA_DATA`` environment variable, when set and not empty;
    3. ``~/skmeta_data``.

    A leading ``~`` is expanded to the user's home folder.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder to use. ``None`` means: look at ``SKMETA_DATA``, then fall
        back to ``~/skmeta_data``.

    Returns
    -------
    data_home : str
        The path of the data folder.

    Notes
    -----
    Unlike :func:`sklearn.datasets.get_data_home`, this function creates
    nothing: the folder may not exist yet, and it may be read-only (a data
    folder shared between users, for example). The loaders create the folders
    they need only when they write into them (downloads and caches).

    Examples
    --------
    >>> from skmeta.datasets import get_data_home
    >>> get_data_home("/srv/shared/data")
    '/srv/shared/data'
    >>> import os
    >>> get_data_home("~/data") == os.path.join(os.path.expanduser("~"), "data")
    True
    >>> os.path.basename(get_data_home())  # doctest: +SKIP
    'skmeta_data'
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or os.path.join("~", "skmeta_data")
    return os.path.expanduser(os.fspath(data_home))
