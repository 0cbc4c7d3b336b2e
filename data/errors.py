"""The data layer's error: bad input from a user, with a message naming the input and the problem."""


class DataError(ValueError):
    """A recording, video, dataset or option that cannot be used as given.

    The message always names the input (a path, an option) and says what is wrong with it, so the
    CLI can print it as one line.
    """
