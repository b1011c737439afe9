"""``doit run`` (and plain ``doit``): doit's run, with a build state that cannot be saved
(a read-only checkout, a full disk) reported as one error after the run's summary, and the
exit code 3 doit gives its other errors, instead of a traceback that hides the summary; and
what every plugin command does with a closed pipe and a bad option (:class:`PipeSafe`)."""
from __future__ import annotations

import sys

from doit.cmd_run import Run as _DoitRun

from .cmd_base import PipeSafe


class Run(PipeSafe, _DoitRun):
    # doit calls _execute with the parameters its signature names: doit's, spelled out
    def _execute(self, outfile, verbosity=None, always=False, continue_=False,
                 reporter="console", num_process=0, par_type="process", single=False,
                 auto_delayed_regex=False, force_verbosity=False, failure_verbosity=0,
                 pdb=False):
        options = dict(verbosity=verbosity, always=always, continue_=continue_,
                       reporter=reporter, num_process=num_process, par_type=par_type,
                       single=single, auto_delayed_regex=auto_delayed_regex,
                       force_verbosity=force_verbosity, failure_verbosity=failure_verbosity,
                       pdb=pdb)
        backend = self.dep_manager.backend
        if not hasattr(backend, "defer_errors"):  # another backend (--backend json)
            return super()._execute(outfile, **options)
        backend.defer_errors = True
        result = super()._execute(outfile, **options)
        if backend.save_error:
            sys.stderr.write(f"ERROR: {backend.save_error}\n")
            return 3
        return result
