"""stated_sensor_size: the header's sensor size without decoding, consistent with probe_events."""
import pytest

from data import probe_events, stated_sensor_size

FILES = {
    "expelliarmus_evt2_sample.raw": (640, 480),
    "expelliarmus_evt3_sample.raw": (1280, 720),
    "tonic_sample.aedat4": (320, 240),
    "tonic_sample_ncars.dat": None,     # the header states no geometry: only the events can tell
    "tonic_sample_nmnist.bin": None,
}


@pytest.mark.parametrize("name", FILES)
def test_stated_size_matches_the_probe(shared_data, name):
    path = shared_data / "events" / name
    stated = stated_sensor_size(path)
    if FILES[name] is None:
        assert stated is None
    else:
        assert tuple(stated) == FILES[name] == tuple(probe_events(path).sensor_size)
