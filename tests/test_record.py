"""`record` renders a trained policy headless to MP4 or GIF; `eval --render` and missing renderers fail clearly."""

import sys

import gymnasium as gym
import imageio.v3 as imageio
import numpy as np
import pytest

from sb3_ddpg_ext import DDPGExt
from sb3_ddpg_ext.cli import main
from sb3_ddpg_ext.experiments import record as record_module
from sb3_ddpg_ext.experiments.record import RendererError, record


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.zip"
    DDPGExt("MlpPolicy", "InvertedPendulum-v5", policy_kwargs=dict(net_arch=[8]), seed=0).save(path)
    return path


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_a_recording_holds_one_frame_per_step_at_the_asked_size(tmp_path, model_path, suffix):
    output = record("InvertedPendulum-v5", model_path, tmp_path / f"run{suffix}", 12, None, 0, dict(width=64, height=48))
    frames = imageio.imread(output)
    assert frames.shape == (12, 48, 64, 3) and frames.dtype == np.uint8
    assert frames.max() > 0 and not np.array_equal(frames[0], frames[-1])  # the pendulum is drawn, and it moves


def test_the_cli_records_a_gif_from_a_saved_model(tmp_path, model_path, capsys):
    output = tmp_path / "clip.gif"
    argv = ["record", "--env", "InvertedPendulum-v5", "--model", str(model_path), "--output", str(output), "--steps", "5"]
    assert main([*argv, "--env-kwargs", "width:32", "height:32", "--no-progress-bar"]) == 0, capsys.readouterr().err
    assert f"recorded 5 frames of InvertedPendulum-v5 to {output}" in capsys.readouterr().out


def test_an_env_that_renders_no_image_is_a_clear_error(tmp_path, model_path, monkeypatch):
    monkeypatch.setattr(gym.Env, "render", lambda self: None)
    monkeypatch.setattr(gym.Wrapper, "render", lambda self: None)
    with pytest.raises(RendererError, match="not an RGB image; it cannot be recorded"):
        record("InvertedPendulum-v5", model_path, tmp_path / "x.gif", 2, progress_bar=False)


def test_a_missing_imageio_names_the_extra_to_install(tmp_path, model_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio", None)
    monkeypatch.setitem(sys.modules, "imageio.v2", None)
    with pytest.raises(RendererError, match=r"recording needs imageio: pip install 'sb3-ddpg-ext\[record\]'"):
        record("InvertedPendulum-v5", model_path, tmp_path / "x.gif", 2)


def test_a_failing_opengl_says_how_to_render_headless(tmp_path, model_path, monkeypatch):
    def no_egl(self):
        raise ImportError("Cannot initialize a EGL device display")

    monkeypatch.setattr(gym.Wrapper, "render", no_egl)
    with pytest.raises(RendererError, match="apt install libegl1; MUJOCO_GL=egl"):
        record("InvertedPendulum-v5", model_path, tmp_path / "x.mp4", 2, progress_bar=False)


def test_eval_render_without_a_display_points_to_record(model_path, monkeypatch, capsys):
    monkeypatch.setattr(record_module, "has_display", lambda: False)
    assert main(["eval", "--env", "InvertedPendulum-v5", "--model", str(model_path), "--render"]) == 2
    assert "`--render` opens a window, and this machine has no display" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments,message",
    [
        ({"output": "clip.avi"}, "must end in one of ['.mp4', '.gif']"),
        ({"steps": 0}, "`steps` must be an integer >= 1, got 0"),
        ({"fps": 0}, "`fps` must be an integer >= 1, got 0"),
    ],
)
def test_bad_recording_settings_are_refused_by_name(tmp_path, model_path, arguments, message):
    settings = {"env_id": "InvertedPendulum-v5", "model_path": model_path, "output": tmp_path / "clip.gif", **arguments}
    with pytest.raises(ValueError) as error:
        record(**settings)
    assert message in str(error.value)


def test_a_normalised_models_video_keeps_the_envs_frame_rate(tmp_path, model_path):
    from PIL import Image
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_ddpg_ext.experiments.run_folder import companion

    VecNormalize(make_vec_env("InvertedPendulum-v5")).save(str(companion(model_path, "vecnormalize")))
    try:
        output = record("InvertedPendulum-v5", model_path, tmp_path / "n.gif", 3, None, 0, dict(width=16, height=16), False)
    finally:
        companion(model_path, "vecnormalize").unlink()
    fps = gym.make("InvertedPendulum-v5").metadata["render_fps"]
    assert Image.open(output).info["duration"] == pytest.approx(1000 / fps, abs=1)


@pytest.mark.parametrize(
    "command,options",
    [
        ("record", ["--env", "--model", "--output", "--steps", "--fps", "--seed", "--env-kwargs", "--no-progress-bar"]),
        ("eval", ["--env", "--model", "--n-episodes", "--seed", "--render", "--env-kwargs"]),
    ],
)
def test_the_help_of_record_and_eval_lists_every_option(command, options, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert all(option in text for option in options)
