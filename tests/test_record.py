"""Every mode's baseline record: one class, its shapes, slicing, writing and size."""

from __future__ import annotations

import numpy as np

from ggflip.choice.baseline import BaselineScores
from ggflip.scoring.record import PositionRecord
from ggflip.scoring.topk import BaselineRows, baseline_normalize, kl_rows, normalize


def _filled(n_rows: int, k: int, n_samples: int, start: int) -> PositionRecord:
    """A record whose every value is distinct (so a misplaced row shows)."""
    record = PositionRecord.allocate(n_rows, k, n_samples)
    for offset, array in enumerate(record.arrays()):
        array[...] = np.arange(array.size).reshape(array.shape) + start + 1000 * offset
    return record


class TestPositionRecord:
    """The arrays of the kernel's BaselineRows, with what storing them needs."""

    def test_its_arrays_are_the_kernels_with_documented_dtypes_and_shapes(self) -> None:
        record = PositionRecord.allocate(5, 3, 2)
        assert PositionRecord.NAMES == tuple(BaselineRows.__dataclass_fields__)
        assert isinstance(record, BaselineRows)
        shapes = {name: (array.shape, array.dtype) for name, array in record.named().items()}
        assert shapes == {
            "top_ids": ((5, 3), np.dtype(np.int32)),
            "top_logits": ((5, 3), np.dtype(np.float32)),
            "lse": ((5,), np.dtype(np.float64)),
            "tail_logmass": ((5,), np.dtype(np.float64)),
            "sample_ids": ((5, 2), np.dtype(np.int32)),
            "sample_logits": ((5, 2), np.dtype(np.float32)),
        }
        assert (record.n_rows, record.k, record.n_samples) == (5, 3, 2)

    def test_bytes_per_row_is_what_the_arrays_hold(self) -> None:
        # K int32 ids + K float32 logits, float64 lse and tail mass, S int32 ids + S float32 logits
        assert PositionRecord.bytes_per_row(512, 32) == 512 * 8 + 16 + 32 * 8 == 4368
        record = PositionRecord.allocate(7, 5, 3)
        assert sum(a.nbytes for a in record.arrays()) == 7 * PositionRecord.bytes_per_row(5, 3)

    def test_put_and_slice_round_trip_rows_in_place(self) -> None:
        record = PositionRecord.allocate(6, 3, 2)
        first, second = _filled(2, 3, 2, 0), _filled(3, 3, 2, 500)
        assert record.put(1, first) == 3
        assert record.put(3, second) == 6
        for name in PositionRecord.NAMES:
            np.testing.assert_array_equal(getattr(record[1:3], name), getattr(first, name))
            np.testing.assert_array_equal(getattr(record[3:6], name), getattr(second, name))
            assert not getattr(record[0:1], name).any()
        concatenated = PositionRecord.concatenate([first, second])
        for name in PositionRecord.NAMES:
            np.testing.assert_array_equal(getattr(concatenated, name), getattr(record[1:], name))

    def test_fits_only_its_own_shape(self) -> None:
        record = PositionRecord.allocate(4, 3, 2)
        assert record.fits(4, 3, 2)
        assert not record.fits(5, 3, 2) and not record.fits(4, 2, 2) and not record.fits(4, 3, 0)
        broken = PositionRecord.of({**record.named(), "sample_logits": np.zeros((4, 1))})
        assert not broken.fits(4, 3, 2)
        float64_logits = PositionRecord.of({**record.named(), "top_logits": np.zeros((4, 3))})
        assert not float64_logits.fits(4, 3, 2)

    def test_a_slice_gives_the_kernel_the_same_kl_as_the_rows_it_holds(self) -> None:
        rng = np.random.default_rng(3)
        base_logits = rng.normal(size=(4, 300)).astype(np.float32)
        quant_logits = base_logits + rng.normal(scale=0.3, size=(4, 300)).astype(np.float32)
        _, rows = baseline_normalize(base_logits, 8, 4, np.random.default_rng(0))
        record = PositionRecord.allocate(6, 8, 4)
        record.put(2, rows)
        norm = normalize(quant_logits, rows.top_ids)
        assert [a.tolist() for a in kl_rows(record[2:6], norm)] == [
            a.tolist() for a in kl_rows(rows, norm)
        ]


def test_choice_baseline_arrays_keep_their_stored_names_and_order() -> None:
    """A multiple-choice cache entry's .npz names its own arrays, then the shared record's."""
    scores = BaselineScores.empty(3, 4, 5, [1, 2, 0], 2)
    assert list(scores.named()) == [
        "option_logprobs",
        "option_sums",
        "option_norms",
        "row_offsets",
        "top_token",
        "top_ids",
        "top_logits",
        "lse",
        "tail_logmass",
        "sample_ids",
        "sample_logits",
    ]
    again = BaselineScores.of(scores.named())
    assert again.fits(3, 5, 2) and again.rows(1).n_rows == 2 and again.rows(2).n_rows == 0
