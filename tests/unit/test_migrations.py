"""The schema's HEAD constant follows the migrations, and a new database reaches it."""

from alembic.script import ScriptDirectory

from beamwatch.store import Store
from beamwatch.store.migrate import HEAD, alembic_config, current


def test_head_constant_is_alembics_head(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    script = ScriptDirectory.from_config(alembic_config(store.engine))
    assert script.get_current_head() == HEAD
    assert current(store.engine) == HEAD
    store.close()
    Store(f"sqlite:///{tmp_path / 'bw.db'}").close()  # a second open skips the migration
