"""
Record a saved model's deterministic policy to a video (MP4) or an animated GIF, headless.

Frames come from the env's ``rgb_array`` rendering; MuJoCo renders without a display through EGL
(``MUJOCO_GL=egl``, set here when no display is there and the variable is unset). ``imageio`` writes the file:
MP4 through ``imageio-ffmpeg`` (H.264), GIF through Pillow, both at the env's frame rate unless told otherwise.
"""

import os
import pathlib
import sys
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from sb3_ddpg_ext.common.validation import InvalidValueError, ValidationError, check_int
from sb3_ddpg_ext.experiments.evaluation import EVAL_SEED_OFFSET, load_for_evaluation

FORMATS = (".mp4", ".gif")
INSTALL_HINT = "pip install 'sb3-ddpg-ext[record]'"


class RendererError(ValidationError):
    """Frames cannot be rendered or written on this machine; the message says what to install."""


def has_display() -> bool:
    """Whether a window can be opened (always assumed off Linux, where no variable tells)."""
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def record(
    env_id: str,
    model_path: str | pathlib.Path,
    output: str | pathlib.Path,
    steps: int = 1000,
    fps: int | None = None,
    seed: int = EVAL_SEED_OFFSET,
    env_kwargs: dict[str, Any] | None = None,
    progress_bar: bool = True,
) -> pathlib.Path:
    """
    Run the deterministic policy for ``steps`` env steps (episodes restart as they end) and write every frame.

    :param env_id: Gymnasium environment id
    :param model_path: a model saved by ``train`` or ``DDPGExt.save`` (its ``VecNormalize`` statistics are used)
    :param output: ``.mp4`` or ``.gif`` file
    :param steps: env steps to record (one frame each)
    :param fps: frames per second (``None``: the env's ``render_fps``, else 30)
    :param seed: seed of the env
    :param env_kwargs: keyword arguments for ``gymnasium.make`` (e.g. ``width``/``height`` of MuJoCo envs)
    :param progress_bar: show a progress bar
    :return: the written file
    """
    output = pathlib.Path(output)
    if output.suffix.lower() not in FORMATS:
        raise InvalidValueError(f"`output`: {str(output)!r} must end in one of {list(FORMATS)} (the format is chosen by it)")
    check_int("steps", steps, 1)
    if fps is not None:
        check_int("fps", fps, 1)
    imageio = _import_imageio(output.suffix.lower())
    if not has_display():
        os.environ.setdefault("MUJOCO_GL", "egl")  # read by Gymnasium's MuJoCo renderer when it first renders
    model, env = load_for_evaluation(env_id, model_path, seed, {**(env_kwargs or {}), "render_mode": "rgb_array"})
    try:
        # The env's own metadata (a loaded VecNormalize carries a pickled copy without the frame rate).
        metadata: dict[str, Any] = dict(env.get_attr("metadata")[0] or {})
        if "rgb_array" not in metadata.get("render_modes", ()):
            raise RendererError(f"{env_id} renders no RGB frames (its render modes: {metadata.get('render_modes')})")
        rate = fps or int(metadata.get("render_fps") or 30)
        _write(imageio, output, model, env, steps, rate, progress_bar)
    finally:
        env.close()
    return output


def _write(imageio: Any, output: pathlib.Path, model: Any, env: Any, steps: int, rate: int, progress_bar: bool) -> None:
    """Frames are written as they come (a long MP4 is not held in memory); the first before the file is opened."""
    observation = env.reset()
    frame = _render(env)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Pillow's GIF writer takes the frame duration in milliseconds; loop=0 repeats forever.
    gif = output.suffix.lower() == ".gif"
    options = {"duration": 1000 / rate, "loop": 0} if gif else {"fps": rate, "macro_block_size": 1}
    with imageio.get_writer(output, mode="I", **options) as writer:
        writer.append_data(frame)
        for _ in tqdm(range(steps - 1), desc="recording", unit="frame", disable=not progress_bar):
            action, _ = model.predict(observation, deterministic=True)
            observation, _, _, _ = env.step(action)  # a VecEnv resets an env whose episode ended by itself
            writer.append_data(_render(env))


def _render(env: Any) -> np.ndarray:
    try:
        frame = env.get_images()[0]  # the env's own frame (VecEnv.render would tile it with SB3's tile_images)
    except (ImportError, AttributeError, RuntimeError) as error:
        # EGL or OSMesa missing, or no OpenGL at all: MuJoCo's renderer fails on first use.
        raise RendererError(
            f"the env could not render a frame ({type(error).__name__}: {error}); MuJoCo renders headless with EGL"
            " (apt install libegl1; MUJOCO_GL=egl) or OSMesa (apt install libosmesa6; MUJOCO_GL=osmesa)"
        ) from error
    except gym.error.DependencyNotInstalled as error:
        raise RendererError(f"the env could not render a frame: {error}") from error
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise RendererError(f"the env rendered {type(frame).__name__}, not an RGB image; it cannot be recorded")
    return frame


def _import_imageio(suffix: str) -> Any:
    try:
        import imageio.v2 as imageio
    except ImportError as error:
        raise RendererError(f"recording needs imageio: {INSTALL_HINT}") from error
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError as error:
            raise RendererError(f"MP4 files need imageio-ffmpeg: {INSTALL_HINT} (or write a .gif)") from error
    return imageio
