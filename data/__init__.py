"""The data layer: event files, representations, windows, augmentations, video, datasets.

Time (units, dt, the time scale, windows) is ``data.timing``'s; how an observation becomes a model
input, from training to streaming, is ``data.preprocessing``'s contract (``Preprocessing``).
Code only, never datasets: dataset roots come from a config value or ``LP_DATA_DIR``.
Events are canonical structured arrays (``EVENT_DTYPE``: x, y uint16, t int64 µs, p int8), sorted
by time; clips are ``x (T, C, H, W) float32``, ``t (T,) float64`` seconds and a label.
"""
from data.errors import DataError
from data.events import EVENT_DTYPE, Events, SensorSize, as_events, check_events, make_events
from data.io import (
    DEFAULT_CHUNK_SIZE,
    EventFileInfo,
    Recording,
    available_formats,
    iter_events,
    probe_events,
    stated_sensor_size,
    read_events,
    writable_formats,
    write_events,
)
from data.representations import (
    EventHistogram,
    Representation,
    TimeSurface,
    VoxelGrid,
    create_representation,
    list_representations,
    normalize_grid,
    register_representation,
    to_event_histogram,
    to_time_surface,
    to_voxel_grid,
)
from data.windows import Window, WindowCutter, WindowSpec, iter_windows, slice_windows
from data.timing import first_dt, nominal_period, s_to_us, step_dt, us_to_s
from data.preprocessing import Preprocessing
from data.augment import (
    BackgroundNoise,
    Compose,
    DropArea,
    DropEvents,
    DropTimeSpan,
    FlipPolarity,
    FlipX,
    FlipY,
    HotPixels,
    SpatialJitter,
    TemporalJitter,
    add_background_noise,
    add_hot_pixels,
    drop_area,
    drop_events,
    drop_time_span,
    flip_polarity,
    flip_x,
    flip_y,
    spatial_jitter,
    temporal_jitter,
)
from data.video import VideoInfo, iter_video, iter_webcam, read_video, video_info, video_times
from data.video_folder import TimingAugment, VideoFolderDataset
from data.collate import collate_clips
from data.simulator import EventSimulator, SimulatorConfig, SimulatorState, apply_refractory, simulate_events
from data.synthetic import SyntheticConfig, SyntheticMotionDataset
from data.geometry import rescale_events
from data.event_datasets import (
    DATA_DIR_ENV,
    EventClipDataset,
    dataset_root,
    get_event_dataset,
    list_event_datasets,
    register_event_dataset,
)

import types as _types  # noqa: E402

# Everything imported above, not the submodules themselves.
__all__ = sorted(k for k, v in globals().items() if not k.startswith("_") and not isinstance(v, _types.ModuleType))
