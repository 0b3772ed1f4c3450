"""Tasks by name: the built-in ones, and a user's `Task` named `module:attribute` without editing the library."""

import pytest

from score_trl.tasks import TASKS, Task, TaskArguments, get_task


MODULE = """
from score_trl.rewards import math_reward
from score_trl.tasks import Task

mine = Task(name="mine", load_train=None, load_eval=None, reward=math_reward, verifier=math_reward, instruction="Again.",
            dataset_name=None, eval_dataset_name=None)
not_a_task = 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_tasks"


def test_built_in_tasks_by_name():
    assert get_task("math") is TASKS["math"]


def test_a_task_from_the_users_module(user_module):
    task = get_task(f"{user_module}:mine")
    assert isinstance(task, Task) and task.name == "mine" and callable(task.verifier)
    assert "mine" not in TASKS  # nothing was registered in the library
    assert TaskArguments(task=f"{user_module}:mine").task == f"{user_module}:mine"


@pytest.mark.parametrize(
    "name,message",
    [
        ("units", r"not a built-in task .* `module:attribute`"),
        ("no_such_module_here:units", r"cannot import 'no_such_module_here'.*PYTHONPATH"),
        ("my_tasks:not_a_task", r"my_tasks.not_a_task is int, not a `score_trl.tasks.Task`"),
        ("my_tasks:missing", r"my_tasks.missing is NoneType"),
    ],
)
def test_a_name_that_is_no_task_says_what_works(user_module, name, message):
    with pytest.raises(ValueError, match=message):
        get_task(name)
