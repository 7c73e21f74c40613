"""One exception class per kind of failure, so callers and tests can tell them apart."""


class TiercutError(Exception):
    """Base class of every error tiercut raises on purpose."""


class UnknownModelError(TiercutError, KeyError):
    """A model name that is neither in the zoo nor a loadable ``module:factory`` path."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class TraceError(TiercutError):
    """The model cannot be captured as a graph; the message names the construct and node."""


class ExampleInputError(TiercutError, ValueError):
    """The example inputs do not fit the model."""


class GraphError(TiercutError, ValueError):
    """A graph that breaks an invariant (cycle, unknown input, bad metadata)."""


class AssignmentError(TiercutError, ValueError):
    """A node-to-stage assignment that cannot be split (data flowing backward, missing nodes)."""


class ProfileError(TiercutError, ValueError):
    """A profile that does not follow the ``tiercut-profile/1`` format."""


class PlanError(TiercutError, ValueError):
    """A plan the runtime cannot run; the message names the bad field."""
