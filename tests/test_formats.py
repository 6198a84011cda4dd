"""Label readers and writers on real shared files and hand-made bad inputs."""

import numpy as np

from workbench.formats.livelink import read_livelink_csv, write_livelink_csv


def test_livelink_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.random((130, 52)).astype(np.float32)
    path = tmp_path / "take.csv"
    write_livelink_csv(path, values, fps=60.0)
    track = read_livelink_csv(path)
    assert track.fps == 60.0
    assert track.values.shape == (130, 52)
    np.testing.assert_allclose(track.values, values, atol=1e-6)
