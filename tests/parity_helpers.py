"""What the parity tests of the family modules share: one tolerance and one comparison."""

ATOL = 1e-5


def assert_close(got, expected, what):
    assert got.shape == expected.shape, f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    diff = (got - expected).abs().max().item()
    assert diff <= ATOL, f"{what}: largest difference {diff:.3g} exceeds {ATOL}"
