-- 0003_reserved: PLACEHOLDER on branch perf14 only, so that 0005 builds (migrations must be
-- numbered without gaps). The integrator replaces it with the real 0003 of another branch.
SELECT 1;
