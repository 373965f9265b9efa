"""docs/recipes/: the Kubernetes Indexed Job and the AWS Batch array job run real commands.

Each recipe is loaded as its tool would load it (YAML documents; the Batch API's own input
shapes, checked by botocore's validator against its service model), and every ``sharebatch``
command in it is parsed by the real command line. ``--shard`` and ``merge`` come with the
shards work (issue 18): the checks that need them are expected to fail until it is merged,
strictly, so they flip to passing (and must then lose the mark) when it lands.
"""

from __future__ import annotations

import json
import re
from typing import Any

import botocore.session
import typer
import yaml
from botocore.validate import validate_parameters

from sharebatch.cli import app
from sharebatch.remote.uri import parse_uri
from tests.support.paths import ROOT

RECIPES = ROOT / "docs" / "recipes"
K8S = RECIPES / "kubernetes-indexed-job.yaml"
BATCH = RECIPES / "aws-batch-array.json"


def check_cli(args: list[str]) -> None:
    """Parse ``sharebatch ARGS`` as the real CLI would, without running it."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    context = group.make_context("sharebatch", list(args))
    name, command, rest = group.resolve_command(
        context, [*getattr(context, "_protected_args", []), *context.args]
    )
    assert command is not None and name is not None, args
    command.make_context(name, rest, parent=context)


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def without(args: list[str], name: str) -> list[str]:
    """``args`` less an option and its value: what this branch's CLI already has."""
    at = args.index(name)
    return args[:at] + args[at + 2 :]


def shards_of(args: list[str]) -> int:
    found = re.fullmatch(r"auto/(\d+)", option(args, "--shard"))
    assert found, args
    return int(found.group(1))


def sharebatch_reads(variable: str) -> bool:
    """Whether the package's code reads ``variable`` from the environment."""
    return any(
        variable in path.read_text(encoding="utf-8") for path in (ROOT / "sharebatch").rglob("*.py")
    )


# --- Kubernetes --------------------------------------------------------------------------


def k8s() -> dict[str, Any]:
    documents = list(yaml.safe_load_all(K8S.read_text(encoding="utf-8")))
    jobs = [d for d in documents if d["kind"] == "Job"]
    [shards] = [j for j in jobs if j["spec"].get("completionMode") == "Indexed"]
    [merge] = [j for j in jobs if j is not shards]
    [account] = [d for d in documents if d["kind"] == "ServiceAccount"]
    return {"shards": shards, "merge": merge, "account": account}


def container(job: dict[str, Any]) -> dict[str, Any]:
    [found] = job["spec"]["template"]["spec"]["containers"]
    return dict(found)


def expanded(spec: dict[str, Any]) -> list[str]:
    """The container's command line as the kubelet runs it: ``$(VAR)`` from its env."""
    env = {e["name"]: e.get("value", f"<{e['name']}>") for e in spec.get("env", [])}
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in spec["args"]]


def test_k8s_shards_are_an_indexed_job_of_n_completions_with_pod_credentials() -> None:
    """completionMode Indexed, completions N = the N of --shard auto/N, parallelism within
    it; the pods run as a service account with an IRSA role (or Pod Identity), no key."""
    recipe = k8s()
    spec = recipe["shards"]["spec"]
    args = container(recipe["shards"])["args"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == shards_of(args) == 8
    assert 1 <= spec["parallelism"] <= spec["completions"]
    account = recipe["account"]["metadata"]
    assert account["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    for job in (recipe["shards"], recipe["merge"]):
        pod = job["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["name"]
        names = {e["name"] for e in container(job).get("env", [])}
        assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_k8s_run_id_is_the_job_name_and_the_merge_reads_the_shards_folder() -> None:
    """Every shard's --run-id is its Job's name (downward API); the merge's URI is the
    shards' --out plus that name, and its init step waits for that Job."""
    recipe = k8s()
    shard = container(recipe["shards"])
    name = recipe["shards"]["metadata"]["name"]
    [run_env] = [e for e in shard["env"] if e["name"] == "RUN_ID"]
    label = run_env["valueFrom"]["fieldRef"]["fieldPath"]
    assert label == "metadata.labels['batch.kubernetes.io/job-name']"
    assert option(shard["args"], "--run-id") == "$(RUN_ID)"
    out = parse_uri(option(shard["args"], "--out"))
    merge_args = expanded(container(recipe["merge"]))
    assert merge_args[0] == "merge"
    assert merge_args[1] == str(out.child(name)).rstrip("/")
    [wait] = recipe["merge"]["spec"]["template"]["spec"]["initContainers"]
    assert f"job/{name}" in wait["command"] and "--for=condition=Complete" in wait["command"]


def test_k8s_run_command_parses_but_for_shard() -> None:
    """The shard's command line is this CLI's: run, --run-id, --out s3://, --work-dir."""
    args = expanded(container(k8s()["shards"]))
    check_cli(without(args, "--shard"))


def test_k8s_shard_command_parses() -> None:
    """With --shard auto/N the whole command line parses."""
    check_cli(expanded(container(k8s()["shards"])))


def test_k8s_merge_command_parses() -> None:
    """sharebatch merge s3://.../<run-id> is a command of the CLI."""
    check_cli(expanded(container(k8s()["merge"])))


def test_k8s_index_variable_is_the_one_sharebatch_reads() -> None:
    """An Indexed Job sets JOB_COMPLETION_INDEX in each pod: what --shard auto/N reads."""
    assert sharebatch_reads("JOB_COMPLETION_INDEX")


# --- AWS Batch ---------------------------------------------------------------------------


def batch() -> dict[str, Any]:
    return dict(json.loads(BATCH.read_text(encoding="utf-8")))


def substituted(command: list[str], parameters: dict[str, str]) -> list[str]:
    """``Ref::name`` replaced as Batch does, from the submission's (or default) parameters."""
    return [parameters[a[5:]] if a.startswith("Ref::") else a for a in command]


def test_batch_recipe_is_valid_api_input() -> None:
    """Each part is what RegisterJobDefinition and SubmitJob accept (botocore's model)."""
    model = botocore.session.get_session().get_service_model("batch")
    recipe = batch()
    validate_parameters(
        recipe["jobDefinition"], model.operation_model("RegisterJobDefinition").input_shape
    )
    for part in ("shards", "merge"):
        validate_parameters(recipe[part], model.operation_model("SubmitJob").input_shape)


def test_batch_array_size_is_n_and_the_merge_waits_for_every_child() -> None:
    """arrayProperties.size = the N of --shard auto/N; the merge depends on the array job
    as a whole (no type: a job depending on an array job starts when all its children
    succeeded; N_TO_N would pair child with child, SEQUENTIAL chain the shards)."""
    recipe = batch()
    definition = recipe["jobDefinition"]
    command = substituted(
        definition["containerProperties"]["command"],
        {**definition["parameters"], **recipe["shards"]["parameters"]},
    )
    assert recipe["shards"]["arrayProperties"]["size"] == shards_of(command) == 8
    assert recipe["merge"]["dependsOn"] == [{"jobId": "SHARDS_JOB_ID"}]
    assert "arrayProperties" not in recipe["merge"]
    assert recipe["shards"]["jobDefinition"] == definition["jobDefinitionName"]
    out = parse_uri(option(command, "--out"))
    merge = recipe["merge"]["containerOverrides"]["command"]
    assert merge[:2] == ["sharebatch", "merge"]
    assert merge[2] == str(out.child(option(command, "--run-id"))).rstrip("/")


def test_batch_run_command_parses_but_for_shard() -> None:
    """The shard's command line (parameters substituted) is this CLI's, --shard aside."""
    recipe = batch()
    definition = recipe["jobDefinition"]
    command = substituted(
        definition["containerProperties"]["command"], recipe["shards"]["parameters"]
    )
    assert command[0] == "sharebatch"
    check_cli(without(command[1:], "--shard"))


def test_batch_shard_command_parses() -> None:
    """With --shard auto/N the whole command line parses."""
    recipe = batch()
    command = substituted(
        recipe["jobDefinition"]["containerProperties"]["command"], recipe["shards"]["parameters"]
    )
    check_cli(command[1:])


def test_batch_merge_command_parses() -> None:
    """The merge job's command is a command of the CLI."""
    check_cli(batch()["merge"]["containerOverrides"]["command"][1:])


def test_batch_index_variable_is_the_one_sharebatch_reads() -> None:
    """Each child of an array job gets AWS_BATCH_JOB_ARRAY_INDEX: what --shard auto/N reads."""
    assert sharebatch_reads("AWS_BATCH_JOB_ARRAY_INDEX")


def test_operations_doc_points_at_both_recipes() -> None:
    """docs/operations.md links each recipe file, so the checked files are the shown ones."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for recipe in (K8S, BATCH):
        assert f"recipes/{recipe.name}" in text
