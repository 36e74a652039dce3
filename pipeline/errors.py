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


class BadAnswerError(InferenceError):
    """The server answered with outputs that do not make a valid result (counts past the arrays, NaN scores)."""


class ServerUnavailableError(InferenceError):
    """The inference server could not be reached, even after the retries."""


class InferenceTimeoutError(InferenceError):
    """A request did not complete within its deadline."""


class KafkaUnavailableError(PipelineError):
    """Kafka could not be reached, refused the login, or stopped answering."""


class TopicsError(PipelineError):
    """The topics are missing or not laid out as the applications need (partitions, compaction)."""


class StateLoadError(PipelineError):
    """A consumer could not load the complete state of the cameras it was assigned."""


class ConsumerFatalError(PipelineError):
    """The consumer must stop: not a record's fault (fenced by another member, broker gone, not authorised)."""
