Rails.application.routes.draw do
  # Define your application routes per the DSL in https://guides.rubyonrails.org/routing.html

  resources :books, only: %i[ index show new create ]

  # Reveal health status on /healthz that returns 200 if the app boots with no exceptions, otherwise 500.
  # Load balancers and the deploy tool check it; it replaces the generated /up route.
  get "healthz" => "rails/health#show", as: :rails_health_check

  # Render dynamic PWA files from app/views/pwa/*
  get "service-worker" => "rails/pwa#service_worker", as: :pwa_service_worker
  get "manifest" => "rails/pwa#manifest", as: :pwa_manifest

  # Defines the root path route ("/")
  root "books#index"
end
