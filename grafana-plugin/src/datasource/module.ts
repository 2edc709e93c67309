import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './ConfigEditor';
import { LogGuardianDatasource } from './datasource';
import { QueryEditor } from './QueryEditor';
import type { LgOptions, LgQuery } from './types';

export const plugin = new DataSourcePlugin<LogGuardianDatasource, LgQuery, LgOptions>(LogGuardianDatasource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
