"""The command line. Start-up matters for a linter run in pre-commit hooks, so two things happen
before the heavy imports: pydantic's plugin discovery (an entry-point scan gpuherd never needs) is
turned off, and the cyclic collector is paused while modules load; `app.main` freezes what was
imported and turns the collector back on."""

import gc
import os

os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
gc.disable()
