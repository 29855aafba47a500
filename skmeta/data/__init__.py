"""Tasks: their forms and checks, support/query splits, episodes, seeding and meta-batches.

One idea per module: :mod:`~skmeta.data.task` (the :class:`Task` container and the
validated :class:`TaskSequence`), :mod:`~skmeta.data.forms` (the four forms tasks
come in), :mod:`~skmeta.data.checks`, :mod:`~skmeta.data.split` (support and
query), :mod:`~skmeta.data.labels`, :mod:`~skmeta.data.episodes`,
:mod:`~skmeta.data.seeding`, :mod:`~skmeta.data.transform` and
:mod:`~skmeta.data.metabatch` (tasks stacked by shape into meta-batches, and
:class:`TaskSplit` for meta-validation).
"""

from .checks import check_task_arrays, check_task_size, warn_on_scale  # noqa: F401 - the package's helpers
from .episodes import EpisodeSampler
from .forms import as_tasks, tasks_from_groups  # noqa: F401 - as_tasks: a helper
from .labels import encode_labels  # noqa: F401 - the package's helpers
from .metabatch import (  # noqa: F401 - the package's helpers
    MetaBatch,
    MetaBatchIterator,
    TaskSplit,
    group_by_shape,
    make_meta_batch,
    stacked_epoch,
)
from .seeding import seed_from  # noqa: F401 - the package's helpers
from .split import split_task  # noqa: F401 - the package's helpers
from .task import ACCEPTED_FORMS, Task, TaskSequence, is_task_sequence  # noqa: F401
from .transform import TaskTransformer

#: the public names (the others are the package's own helpers, importable for plugins)
__all__ = ["Task", "EpisodeSampler", "TaskTransformer", "TaskSplit", "tasks_from_groups"]
