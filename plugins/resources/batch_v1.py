"""batch/v1: Job and CronJob."""

from __future__ import annotations

from kybern import hookimpl
from kybern.models import batch_v1 as m
from kybern.plugins.resources import jobs
from kybern.plugins.resources.common import json_defaulter, json_row, json_validator
from kybern.resources import ResourceType, Subresource

STATUS = Subresource("status")

JOBS = ResourceType(
    group="batch",
    version="v1",
    kind="Job",
    plural="jobs",
    singular="job",
    namespaced=True,
    model=m.Job,
    categories=("all",),
    subresources=(STATUS,),
    status_subresource=True,
    default=json_defaulter(jobs.default_job),
    validate=json_validator(jobs.validate_job),
    table_columns=jobs.JOB_COLUMNS,
    table_row=json_row(jobs.job_row),
    field_selectors=jobs.JOB_FIELD_SELECTORS,
)

CRON_JOBS = ResourceType(
    group="batch",
    version="v1",
    kind="CronJob",
    plural="cronjobs",
    singular="cronjob",
    namespaced=True,
    model=m.CronJob,
    short_names=("cj",),
    categories=("all",),
    subresources=(STATUS,),
    status_subresource=True,
    default=json_defaulter(jobs.default_cron_job),
    validate=json_validator(jobs.validate_cron_job),
    table_columns=jobs.CRON_JOB_COLUMNS,
    table_row=json_row(jobs.cron_job_row),
)

RESOURCES = [JOBS, CRON_JOBS]


@hookimpl
def kybern_api_resources() -> list[ResourceType]:
    return list(RESOURCES)
