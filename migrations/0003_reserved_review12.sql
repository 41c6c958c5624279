-- 0003 is review12's migration (API keys). This empty placeholder only keeps catalog17's branch
-- buildable (migration numbers have no gaps) until review12 lands on main: DELETE THIS FILE and its
-- line in src/store/meson.build when merging, keeping review12's 0003.
SELECT 1;
