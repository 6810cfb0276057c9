"""Scripts and servers the tests start (workers, a fake GCS), not tests themselves."""
