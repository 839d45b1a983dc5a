"""Docker at the edge: the seam (`api`), its one real implementation (`gateway`, the only
importer of aiodocker), and the conversions between Docker's JSON and the daemon's values
(`containers`, `engines`)."""
