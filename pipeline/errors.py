"""The project's exceptions: one root, a few specific kinds."""


class PipelineError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(PipelineError):
    """A configuration file or value is invalid."""


class CheckpointError(PipelineError):
    """A checkpoint does not fit the model it is loaded into."""


class ExportError(PipelineError):
    """Exporting or building an inference artifact failed."""


class GPUUnavailableError(PipelineError):
    """The operation needs a CUDA GPU (and its libraries) that this host lacks."""


class InferenceError(PipelineError):
    """The inference server refused or failed a request."""


class InvalidRequestError(InferenceError):
    """The request itself is bad (corrupt or oversized frame, empty batch, wrong type); retrying will not help."""


class ServerUnavailableError(InferenceError):
    """The inference server could not be reached, even after the retries."""


class InferenceTimeoutError(InferenceError):
    """A request did not complete within its deadline."""
