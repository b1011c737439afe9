"""raibid-deploy: the task graph. Thin on purpose: configuration and task creators only.

`doit list` shows every task; `doit plan` shows the migration plan; `doit doctor` shows
the external tools. The creators live in tasks/, one module per concern.
"""
from tasks import tools
from tasks.reporter import RichReporter

tools.activate()  # .tools/bin first on PATH for every task

DOIT_CONFIG = {
    "default_tasks": ["ci"],
    "reporter": RichReporter,
}

from tasks.core import task_ci  # noqa: E402
from tasks.crds import task_crds  # noqa: E402
from tasks.gitops import task_publish  # noqa: E402
from tasks.charts import task_vendor  # noqa: E402
from tasks.jsonnet import task_tanka, task_libtest  # noqa: E402
from tasks.local_secrets import task_secrets  # noqa: E402
from tasks.render import task_render  # noqa: E402
from tasks.validate import task_validate  # noqa: E402
from tasks.deploy import task_context, task_diff, task_apply  # noqa: E402
from tasks.docker import task_docker, task_image, task_push  # noqa: E402
from tasks.docs import task_docs  # noqa: E402
from tasks.tracker import task_plan_check  # noqa: E402
from tasks.cluster import task_cluster, task_cluster_check, task_cluster_delete  # noqa: E402
from tasks.up import task_up, task_up_tools, task_down  # noqa: E402
from tasks.up import task_dev, task_dev_tools, task_e2e, task_e2e_tools  # noqa: E402
from tasks.controlplane import task_controlplane  # noqa: E402
from tasks.tilt import task_tilt_check, task_tilt_server_binary, task_tilt_takeover  # noqa: E402
