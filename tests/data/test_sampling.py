"""The training order: epochs of whole SGD iterations when gradients are accumulated."""

from __future__ import annotations

from fcnlab.data.sampling import EpochSampler


def _order(sampler: EpochSampler) -> list[int]:
    return [i for i, _ in sampler]


def test_an_epoch_is_a_whole_number_of_accumulated_steps():
    # 7 images, batch 2 (6 used, drop_last), 4 batches per step: the epoch wraps around its own
    # order to 8 samples = one full step, instead of Lightning stepping on 3 batches at its end.
    plain = EpochSampler(7, seed=3, batch_size=2)
    wrapped = EpochSampler(7, seed=3, batch_size=2, batches_per_step=4)
    assert len(plain) == 6 and len(wrapped) == 8
    assert _order(wrapped) == _order(plain) + _order(plain)[:2]
    # more than one wrap: 2 images, batch 1, 20 batches per step (the FCN CVPR preset's k)
    tiny = EpochSampler(2, seed=0, batch_size=1, batches_per_step=20)
    order = _order(tiny)
    assert len(order) == 20 and order == order[:2] * 10


def test_whole_steps_already_unchanged_and_resume_position_kept():
    plain = EpochSampler(8, seed=1, batch_size=2)
    wrapped = EpochSampler(8, seed=1, batch_size=2, batches_per_step=2)
    assert _order(plain) == _order(wrapped)
    wrapped = EpochSampler(7, seed=1, batch_size=2, batches_per_step=4)
    full = _order(wrapped)
    wrapped.start_batch = 3  # resumed after 3 batches of the epoch
    assert _order(wrapped) == full[6:]
