import { render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter, Route, Routes } from 'react-router-dom';

import { AppPages } from '../components/App';
import { installFakeBackend } from '../testing/fakeBackend';
import { incident, template } from '../testing/fixtures';

const BASE = '/api/plugin-proxy/logguardian-sidecar-app/sidecar';

const renderAt = (path: string) =>
  render(
    <MemoryRouter initialEntries={[path]} future={{ v7_startTransition: true, v7_relativeSplatPath: true }}>
      <Routes>
        <Route
          path="/a/logguardian-sidecar-app/*"
          element={<AppPages base={BASE} settings={{ kibanaUrlTemplate: 'https://kibana/app/discover?q={service}&from={start}' }} />}
        />
      </Routes>
    </MemoryRouter>
  );

describe('Incidents page', () => {
  it('renders reasons, examples, the explanation and a Kibana link', async () => {
    installFakeBackend(() => ({
      data: {
        incidents: [
          incident({
            explanation: {
              source: 'llm',
              model: 'gemma-3-270m',
              summary: 'checkout fails card payments after v1.4.2',
              evidence: [{ ref: 'a8f997912c', fact: '80% of errors since 10:40' }],
            },
          }),
        ],
      },
    }));
    renderAt('/a/logguardian-sidecar-app/incidents');
    expect(await screen.findByText(/new template "payment <\*> failed"/)).toBeInTheDocument();
    expect(screen.getByTestId('incident-explanation')).toHaveTextContent('checkout fails card payments after v1.4.2');
    expect(screen.getByTestId('incident-explanation')).toHaveTextContent('a8f997912c: 80% of errors since 10:40');
    expect(screen.getByText('payment 123 failed: gateway timeout')).toBeInTheDocument();
    expect(screen.getByText('Open in Kibana').closest('a')).toHaveAttribute('href', expect.stringContaining('q=checkout'));
  });

  it('shows the sidecar error in words instead of a blank page', async () => {
    installFakeBackend(() => ({ status: 401, data: { error: 'unauthorized' } }));
    renderAt('/a/logguardian-sidecar-app/incidents');
    expect(await screen.findByTestId('sidecar-error')).toHaveTextContent('check the token');
  });
});

describe('Templates page', () => {
  it('Mark normal posts feedback through the proxy route and updates the row', async () => {
    const calls = installFakeBackend((call) =>
      call.method === 'POST'
        ? { data: { template_id: 'a1b2c3d4e5', state: 'suppressed', verdict: 'normal' } }
        : { data: { templates: [template()] } }
    );
    renderAt('/a/logguardian-sidecar-app/templates');
    const row = await screen.findByTestId('template-a1b2c3d4e5');
    expect(row).toHaveTextContent('normal');
    await userEvent.click(screen.getByRole('button', { name: 'Mark normal' }));
    await waitFor(() => expect(screen.getByTestId('template-state')).toHaveTextContent('suppressed'));
    const post = calls.find((c) => c.method === 'POST')!;
    expect(post.url).toBe(`${BASE}/api/v1/templates/a1b2c3d4e5/feedback`);
    expect(post.data).toEqual({ verdict: 'normal', note: '' });
    expect(screen.getByRole('button', { name: 'Re-arm' })).toBeInTheDocument();
  });

  it('a failed feedback call says why on the row', async () => {
    installFakeBackend((call) =>
      call.method === 'POST' ? { status: 404, data: { error: "unknown template id 'a1b2c3d4e5'" } } : { data: { templates: [template()] } }
    );
    renderAt('/a/logguardian-sidecar-app/templates');
    await userEvent.click(await screen.findByRole('button', { name: 'Mark normal' }));
    expect(await screen.findByRole('alert')).toHaveTextContent("unknown template id 'a1b2c3d4e5'");
    expect(screen.getByTestId('template-state')).toHaveTextContent('normal');
  });

  it('filters by search text', async () => {
    installFakeBackend(() => ({ data: { templates: [template(), template({ id: 'zz', text: 'disk <NUM> full' })] } }));
    renderAt('/a/logguardian-sidecar-app/templates');
    await screen.findByTestId('template-zz');
    await userEvent.type(screen.getByLabelText('Search templates'), 'disk');
    expect(screen.queryByTestId('template-a1b2c3d4e5')).not.toBeInTheDocument();
    expect(screen.getByTestId('template-zz')).toBeInTheDocument();
  });
});

describe('Exceptions page', () => {
  it('says clearly when the sidecar has no exceptions endpoint', async () => {
    installFakeBackend(() => ({ status: 404, data: { error: 'not found' } }));
    renderAt('/a/logguardian-sidecar-app/exceptions');
    expect(await screen.findByTestId('exceptions-unsupported')).toBeInTheDocument();
  });

  it('lists groups with linked frames', async () => {
    installFakeBackend(() => ({
      data: {
        exceptions: [
          {
            fingerprint: 'fp1',
            service: 'cart',
            type: 'TypeError',
            message_template: "'NoneType' object is not subscriptable",
            top_frames: [{ file: 'cart/api.py', function: 'apply_coupon', line: 42, in_app: true, url: 'https://git/cart/api.py#L42' }],
            first_seen: 1_700_000_000,
            last_seen: 1_700_000_100,
            count: 3,
          },
        ],
      },
    }));
    renderAt('/a/logguardian-sidecar-app/exceptions');
    const link = await screen.findByText('apply_coupon (cart/api.py:42)');
    expect(link.closest('a')).toHaveAttribute('href', 'https://git/cart/api.py#L42');
  });
});

describe('Status page', () => {
  it('shows readiness checks and exporter health', async () => {
    installFakeBackend((call) =>
      call.url.endsWith('/metrics')
        ? { data: 'logguardian_queue_depth 3\nlogguardian_queue_capacity 10\nlogguardian_exporter_sent_total{exporter="local"} 9\n' }
        : { data: { status: 'ready', checks: { queue: { ok: true, detail: '3/10 records queued' } } } }
    );
    renderAt('/a/logguardian-sidecar-app/status');
    expect(await screen.findByTestId('check-queue')).toHaveTextContent('3/10 records queued');
    expect(screen.getByTestId('status-summary')).toHaveTextContent('queue 3/10');
    expect(screen.getByTestId('exporter-local')).toHaveTextContent('9');
  });
});
