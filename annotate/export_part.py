"""A child process of an export built in parts (annotate.services.export_parts): not a
command for people. `python -m annotate.export_part`, its job as JSON on stdin."""

import json
import sys


def main() -> None:
    import django
    from django.conf import settings

    django.setup()  # before the job arrives: the parent writes its own range meanwhile
    job = json.loads(sys.stdin.read())
    # The parent's database, which in a test run is the run's own, not the settings' name.
    settings.DATABASES["default"]["NAME"] = job["database"]
    from django.db import connections

    connections["default"].settings_dict["NAME"] = job["database"]
    from annotate.services.export_parts import export_part_build

    export_part_build(job)


if __name__ == "__main__":
    main()
