"""``verify(cfg)``: check a data set before training (``verify.py``).

``python verify.py data=<name> paths.data_dir=<dir> [any train.py override]``: ``conf/verify.yaml``
extends ``conf/train.yaml``, so the overrides of a training command pick the same data set, files
and splits. The configured DataModule is built, every image and label of every split is read once
and *every* bad file is listed (not only the first), then a summary: images per split, pixels per
class, the void share. Nothing is written, except the synthetic data set, generated on first use
as for training.

Exit status: 0 when all is well; 1 when a file or list is bad (the report, then one ``error:``
line); 2 when the configuration is wrong (an unknown group option such as ``data=nope``, or a
DataModule that cannot be built from the config), with one ``error:`` line. Hydra's own errors
(an unknown key, override syntax) exit 1, as for ``train.py``.
"""

from __future__ import annotations

from omegaconf import DictConfig

from fcnlab.config import instantiate
from fcnlab.data.verify import format_report, verify_datamodule
from fcnlab.errors import DataError, FcnlabError
from fcnlab.progress import Progress

BAD_FILES = 1
BAD_CONFIG = 2


class BadFilesError(DataError):
    """Some files or split lists of the data set are bad (all listed in the report)."""

    exit_status = BAD_FILES


class BadConfigError(FcnlabError):
    """The DataModule cannot be built from the configuration."""

    exit_status = BAD_CONFIG


def verify(cfg: DictConfig) -> dict:
    """Read every file of every configured split; print the report; return its summary.

    Raises BadConfigError when the DataModule cannot be built, BadFilesError after the report
    when any file or list is bad.
    """
    try:
        datamodule = instantiate(cfg.data.datamodule)
        class_names = list(datamodule.class_names)
    except FcnlabError as e:
        raise BadConfigError(str(e)) from e
    print(f"data={cfg.data.name}: {type(datamodule).__name__}, {len(class_names)} classes")
    _show_progress(datamodule)
    reports = verify_datamodule(datamodule)
    print(format_report(reports, class_names))
    problems = sum(len(r.problems) for r in reports)
    if problems:
        raise BadFilesError(f"data={cfg.data.name}: {problems} problem{'s' * (problems != 1)} "
                            "in the files or lists (listed above)")
    return {"data": cfg.data.name,
            "splits": [{"split": r.key, "name": r.name, "images": r.images} for r in reports]}


def _show_progress(datamodule) -> None:
    """Show the reading of every file (minutes for VOC or CamVid) with :mod:`fcnlab.progress`.

    ``verify_datamodule`` scans each split with ``datamodule.make_dataset(key).scan()``, which
    calls ``dataset.check(i)`` once per sample from a thread pool. This wraps this one
    datamodule's ``make_dataset`` so that each dataset's ``check`` counts one sample done; the
    classes and the pure checks of :mod:`fcnlab.data.verify` stay untouched.
    """
    make_dataset = datamodule.make_dataset

    def tracked(key, *args, **kwargs):
        dataset = make_dataset(key, *args, **kwargs)
        scan, check = dataset.scan, dataset.check

        def scan_tracked(*a, **kw):
            with Progress(f"verify {key}", len(dataset), unit="images") as progress:
                def check_counted(index):
                    try:
                        return check(index)
                    finally:
                        progress.update()

                dataset.check = check_counted
                try:
                    return scan(*a, **kw)
                finally:
                    dataset.check = check

        dataset.scan = scan_tracked
        return dataset

    datamodule.make_dataset = tracked
