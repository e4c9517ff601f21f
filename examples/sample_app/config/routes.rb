Rails.application.routes.draw do
  # Load balancer health check: plain "ok", any Host header (see
  # config/environments/production.rb), no database access.
  get "/up", as: :health_check, to: ->(_env) {
    [200, { "Content-Type" => "text/plain", "Content-Length" => "2", "Cache-Control" => "no-store" }, ["ok"]]
  }

  resources :photos, only: %i[index new create show]

  root "photos#index"
end
