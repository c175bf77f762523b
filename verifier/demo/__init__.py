"""Code the demo and the tests share: the PE writer, test PKI, signing wrappers."""
