from sqlalchemy import Engine, inspect

from vpp import migrate
from vpp.tables import metadata


def test_migrations_roll_back_to_base_and_apply_again(engine: Engine) -> None:
    assert migrate.current_revision(engine) == migrate.head_revision()
    migrate.downgrade(engine, "base")
    assert not set(inspect(engine).get_table_names()) & set(metadata.tables)
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= set(metadata.tables)
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_the_migrated_schema_matches_the_models(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from vpp.jobs.partitions import include_name

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False, "include_name": include_name})
        diff = compare_metadata(context, metadata)
    assert diff == []
