"""What asking for a layout gives on this backend and CPU."""

from __future__ import annotations

import warnings

import pytest

from segkit import backend


@pytest.fixture
def build_in_layout():
    """``build(data_format, make)``: call ``make()``, which asks for ``data_format``.

    Where the layout runs, ``make`` must not warn about it. Where channels_first cannot run
    (TensorFlow on a CPU without oneDNN), ``make`` must warn exactly once and fall back to
    channels_last. Returns what ``make`` returned and the layout it should compute in.
    """

    def build(data_format: str, make):
        if data_format == "channels_last" or backend.channels_first_supported():
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                made = make()
            assert not [w for w in record if "channels_first" in str(w.message)]
            return made, data_format
        with pytest.warns(UserWarning, match="cannot run channels_first") as record:
            made = make()
        assert len(record) == 1, [str(w.message) for w in record]
        return made, "channels_last"

    return build
